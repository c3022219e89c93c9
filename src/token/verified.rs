//! Tokens already verified with a public key, kept per worker thread.
//!
//! An Ed25519 or P-256 signature takes about 38 or 57 µs to check, against 1 µs for
//! HS256, and a mini program sends the same token with every request for as
//! long as it lives. So each thread keeps the tokens it verified with a
//! public key, whole, with their identity: a token is taken from here only
//! if it is byte for byte one that passed every check. A hit checks `exp`
//! again (the one claim that time can fail); revocation is checked after
//! verification, hit or not. The cache belongs to one [`super::TokenKeys`]
//! (a reload starts afresh) and holds at most [`CAPACITY`] tokens per
//! thread: when full, it starts over. HS256 tokens are not kept (checking
//! one costs no more than a lookup).

use std::cell::RefCell;
use std::collections::HashMap;

use super::claims::Identity;

/// Most tokens a thread keeps: about 1.5 MB with tokens of a few hundred
/// bytes; the largest tokens the fast path takes (a login hook's claims up
/// to its limit) could make it ten times that.
pub(super) const CAPACITY: usize = 2048;

struct Cache {
    /// The [`super::TokenKeys`] the tokens were verified with.
    keys: u64,
    verified: HashMap<Box<str>, Identity>,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// The identity of `token`, if this thread verified it with `keys`.
pub(super) fn get(keys: u64, token: &str) -> Option<Identity> {
    CACHE
        .try_with(|c| {
            let c = c.borrow();
            let cache = c.as_ref().filter(|c| c.keys == keys)?;
            cache.verified.get(token).cloned()
        })
        .ok()
        .flatten()
}

/// Remember that `token` passed every check of `keys`.
pub(super) fn put(keys: u64, token: &str, id: &Identity) {
    let _ = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some(cache) if cache.keys == keys => {
                if cache.verified.len() >= CAPACITY {
                    cache.verified.clear();
                }
                cache.verified.insert(token.into(), id.clone());
            }
            _ => {
                *c = Some(Cache {
                    keys,
                    verified: HashMap::from([(token.into(), id.clone())]),
                })
            }
        }
    });
}

/// How many tokens this thread keeps for `keys` (tests).
#[cfg(test)]
pub(super) fn len(keys: u64) -> usize {
    CACHE
        .try_with(|c| {
            c.borrow()
                .as_ref()
                .filter(|c| c.keys == keys)
                .map_or(0, |c| c.verified.len())
        })
        .unwrap_or(0)
}
