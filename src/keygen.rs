//! `wxgate keygen`: a new token key.
//!
//! HS256: a random 32-byte secret, printed (base64). EdDSA and ES256: a key
//! pair written as PEM files, the private key readable by its owner only,
//! and the key's `kid` (its RFC 7638 thumbprint, what `[jwt]` uses when no
//! `kid` is set) printed. Existing files are never overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::token::{Algorithm, KeyError, PrivateKey};

/// What `keygen` made.
#[derive(Debug)]
pub enum NewKey {
    /// An HS256 secret, base64.
    Secret(String),
    /// A key pair written to `private` and `public`.
    Pair {
        kid: String,
        private: PathBuf,
        public: PathBuf,
    },
}

/// Why no key was made.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("{} already exists: choose another --out (keys are never overwritten)", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--out must name a .pem file, like jwt-2026-11.pem")]
    NotPem,
}

/// The public key's file beside `private`: `name.pem` → `name.pub.pem`.
pub fn public_path(private: &Path) -> Option<PathBuf> {
    let name = private.file_name()?.to_str()?;
    let stem = name.strip_suffix(".pem").filter(|s| !s.is_empty())?;
    Some(private.with_file_name(format!("{stem}.pub.pem")))
}

/// Make a key of `alg`; for a key pair, write it to `out` and its `.pub.pem`.
pub fn keygen(alg: Algorithm, out: &Path) -> Result<NewKey, KeygenError> {
    if alg == Algorithm::HS256 {
        let key: [u8; 32] = rand::random();
        return Ok(NewKey::Secret(
            base64::engine::general_purpose::STANDARD.encode(key),
        ));
    }
    let public = public_path(out).ok_or(KeygenError::NotPem)?;
    for path in [out, public.as_path()] {
        if path.exists() {
            return Err(KeygenError::Exists(path.to_path_buf()));
        }
    }
    let key = PrivateKey::generate(alg)?;
    let kid = key.public().thumbprint();
    write_new(out, key.to_pem()?.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public, key.public().to_pem()?.as_bytes(), 0o644) {
        // Not half a pair.
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    Ok(NewKey::Pair {
        kid,
        private: out.to_path_buf(),
        public,
    })
}

/// Create `path` (it must not exist) with `mode` and `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeygenError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeygenError::Exists(path.to_path_buf()),
        _ => KeygenError::Write {
            path: path.to_path_buf(),
            source: e,
        },
    };
    let mut file = options.open(path).map_err(failed)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| KeygenError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::PublicKey;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wxgate-keygen-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_pair_is_written_once_and_its_kid_is_the_thumbprint() {
        let dir = temp_dir("pair");
        for (alg, name) in [(Algorithm::EdDSA, "ed.pem"), (Algorithm::ES256, "ec.pem")] {
            let out = dir.join(name);
            let NewKey::Pair {
                kid,
                private,
                public,
            } = keygen(alg, &out).unwrap()
            else {
                panic!("a pair");
            };
            let private_pem = std::fs::read_to_string(&private).unwrap();
            let public_pem = std::fs::read_to_string(&public).unwrap();
            let key = PrivateKey::from_pem(alg, &private_pem).unwrap();
            assert_eq!(PublicKey::from_pem(alg, &public_pem).unwrap(), key.public());
            assert_eq!(kid, key.public().thumbprint());
            assert!(public.to_str().unwrap().ends_with(".pub.pem"));
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&private).unwrap().permissions().mode();
                assert_eq!(mode & 0o077, 0, "the private key is its owner's only");
            }
            // Never overwritten.
            assert!(matches!(keygen(alg, &out), Err(KeygenError::Exists(_))));
            assert_eq!(std::fs::read_to_string(&private).unwrap(), private_pem);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hs256_is_a_printed_secret_and_names_must_be_pem() {
        let NewKey::Secret(s) = keygen(Algorithm::HS256, Path::new("unused")).unwrap() else {
            panic!("a secret");
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(bytes.len(), 32);
        assert!(matches!(
            keygen(Algorithm::EdDSA, Path::new("key.txt")),
            Err(KeygenError::NotPem)
        ));
        assert_eq!(
            public_path(Path::new("/k/jwt-1.pem")),
            Some(PathBuf::from("/k/jwt-1.pub.pem"))
        );
        assert_eq!(public_path(Path::new(".pem")), None);
    }
}
