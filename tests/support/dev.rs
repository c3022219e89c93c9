//! The environment of `wxgate dev` for tests ([`wxgate::dev::start`]): the
//! gateway in front of the mock WeChat, the echo upstream and the example
//! login hook, each on an ephemeral loopback port.

use std::time::Duration;

use wxgate::dev::DevEnv;

/// The dev environment with its embedded config: the example hook, WeChat
/// timeout 2 s, 16 KiB bodies, `/public/`, `/admin/` and `/` to the echo
/// upstream.
pub async fn embedded() -> DevEnv {
    let any = "127.0.0.1:0".parse().unwrap();
    wxgate::dev::start(any, any, None, &|_| None)
        .await
        .expect("dev environment starts")
}

/// The dev environment with the test's config `toml` (from a file, as
/// `wxgate dev --config` reads it); the gateway talks to the mock WeChat
/// whatever `[wechat] api_base` says. The config is read with
/// [`super::vars`]: `WXGATE_JWT_SECRET` and the `(name, value)` pairs of
/// `extra`.
pub async fn with_config(toml: &str, extra: &[(&str, &str)]) -> DevEnv {
    let dir = super::TempDir::new("dev");
    let path = dir.write("wxgate.toml", toml);
    let any = "127.0.0.1:0".parse().unwrap();
    wxgate::dev::start(any, any, Some(&path), &super::vars(extra))
        .await
        .expect("dev environment starts with the test's config")
}

/// Shut the gateway down (its embedded servers stop as `env` is dropped).
pub async fn stop(env: DevEnv) {
    env.gateway.shutdown(Duration::from_secs(1)).await;
}
