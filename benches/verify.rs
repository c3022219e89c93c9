//! Cost of issuing and verifying one token, per algorithm: `cargo bench
//! --bench verify`. Prints nanoseconds per operation (the median of a few
//! rounds); bench/README.md records the figures. CI only runs its
//! round-trip check (`cargo test --all-targets`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wxgate::config::{JwtConfig, JwtKey, KeyMaterial};
use wxgate::secret::Secret;
use wxgate::token::{Algorithm, NewToken, PrivateKey, TokenKeys};

fn keys(alg: Algorithm) -> TokenKeys {
    let material = match alg {
        Algorithm::HS256 => KeyMaterial::Secret(Secret::from("0123456789abcdef0123456789abcdef")),
        _ => KeyMaterial::Private(Arc::new(PrivateKey::generate(alg).expect("key"))),
    };
    TokenKeys::new(&JwtConfig {
        key: JwtKey {
            algorithm: alg,
            kid: Some("bench".into()),
            source: "bench".into(),
            material,
        },
        previous_keys: Vec::new(),
        issuer: "wxgate".into(),
        audience: "bench".into(),
        ttl: Duration::from_secs(3600),
        leeway: Duration::from_secs(30),
        max_token_bytes: 4096,
    })
}

/// Median nanoseconds per call of `f` over `rounds` rounds of `n` calls.
fn per_call(n: u32, rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[rounds / 2]
}

fn main() {
    // `cargo test --all-targets` runs this too, unoptimised and without
    // `--bench`: then only check that every algorithm round-trips.
    if !std::env::args().any(|a| a == "--bench") {
        for alg in [Algorithm::HS256, Algorithm::EdDSA, Algorithm::ES256] {
            let k = keys(alg);
            let token = k
                .issue(&NewToken {
                    openid: "o",
                    ..Default::default()
                })
                .unwrap()
                .0;
            assert!(k.verify(&token).is_ok(), "{alg}");
        }
        return;
    }
    println!("| algorithm | verify, first time ns | verify, again ns | issue ns | token bytes |");
    println!("|---|---|---|---|---|");
    for alg in [Algorithm::HS256, Algorithm::EdDSA, Algorithm::ES256] {
        let k = keys(alg);
        let new = NewToken {
            openid: "o6_bmjrPTlm6_2sgVt7hMZOPfL2M",
            unionid: Some("o6_bmasdasdsad6_2sgVt7hMZOPfL"),
            appid: Some("wx4f4bc4dec97d474b"),
            ..Default::default()
        };
        // Distinct tokens, fewer than a thread keeps: each verified once
        // (the signature is checked), then again (kept, for EdDSA and ES256).
        let tokens: Vec<String> = (0..1000).map(|_| k.issue(&new).expect("issue").0).collect();
        let mut next = tokens.iter().cycle();
        let first = per_call(1000, 1, || {
            let _ = black_box(k.verify(black_box(next.next().expect("token"))));
        });
        let again = per_call(200_000, 5, || {
            let _ = black_box(k.verify(black_box(next.next().expect("token"))));
        });
        let n = if alg == Algorithm::HS256 {
            50_000
        } else {
            2_000
        };
        let issue = per_call(n, 5, || {
            let _ = black_box(k.issue(black_box(&new)));
        });
        println!(
            "| {alg} | {first:.0} | {again:.0} | {issue:.0} | {} |",
            tokens[0].len()
        );
    }
}
