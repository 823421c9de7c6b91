//! Where the tag keeps its data: the `Store` trait the browser's cookie jar and localStorage
//! implement, an in-memory store beside it, and the rules for reading both at start and
//! carrying out the tracker's writes (each store repairing the other, a store that throws
//! degrading to the next mode).

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::config::StorageMode;
use super::tracker::{keys, Loaded, Write};

/// A store refused or threw (disabled, private mode, quota, a cookie that did not stick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broken;

/// A key-value store, with `&self` methods so fakes can stand in for the browser. [`load`] and
/// [`apply`] are generic over it rather than taking `&dyn Store`: in the tag an indirect call's
/// signature keeps every function of that signature in the wasm's table, `core::fmt` among them
/// (ARCHITECTURE.md, "Where the bytes go"), so the shell passes one enum of its stores.
pub trait Store {
    /// The value of `key`, if any.
    fn get(&self, key: &str) -> Result<Option<String>, Broken>;
    /// Stores `value` under `key` for `max_age` seconds (cookies honour it; localStorage keeps
    /// values until removed, and the record carries its own expiry).
    fn set(&self, key: &str, value: &str, max_age: u64) -> Result<(), Broken>;
    /// Removes `key`.
    fn remove(&self, key: &str) -> Result<(), Broken>;
}

/// An in-memory store: the "none" storage mode's stand-in, and the browser stores' fake in tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: RefCell<Vec<(String, String)>>,
    /// When true every call fails, like a store that throws.
    pub broken: bool,
}

impl MemoryStore {
    /// A store that throws on every call.
    pub fn broken() -> MemoryStore {
        MemoryStore {
            broken: true,
            ..MemoryStore::default()
        }
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<String>, Broken> {
        if self.broken {
            return Err(Broken);
        }
        let map = self.map.try_borrow().map_err(|_| Broken)?;
        Ok(map.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    fn set(&self, key: &str, value: &str, _max_age: u64) -> Result<(), Broken> {
        self.remove(key)?;
        self.map
            .try_borrow_mut()
            .map_err(|_| Broken)?
            .push((String::from(key), String::from(value)));
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<(), Broken> {
        if self.broken {
            return Err(Broken);
        }
        self.map.try_borrow_mut().map_err(|_| Broken)?.retain(|(k, _)| k != key);
        Ok(())
    }
}

/// Reads everything the tracker needs at start. A store that throws reads as empty and is
/// reported in the returned flags `(cookie_broken, local_broken)`.
pub fn load<S: Store>(mode: StorageMode, cookie: &S, local: &S) -> (Loaded, bool, bool) {
    let mut cookie_broken = false;
    let mut local_broken = false;
    let read = |store: &S, key: &str, on: bool, broken: &mut bool| -> Option<String> {
        if !on || *broken {
            return None;
        }
        store.get(key).unwrap_or_else(|_| {
            *broken = true;
            None
        })
    };
    let loaded = Loaded {
        cookie: read(cookie, keys::RECORD, mode.cookie(), &mut cookie_broken),
        local: read(local, keys::RECORD, mode.local(), &mut local_broken),
        queue: read(local, keys::QUEUE, mode.local(), &mut local_broken),
        orders: read(local, keys::ORDERS, mode.local(), &mut local_broken),
        consent: read(cookie, keys::CONSENT, mode.cookie(), &mut cookie_broken)
            .or_else(|| read(local, keys::CONSENT, mode.local(), &mut local_broken)),
        gpc: false,
        webdriver: false,
    };
    (loaded, cookie_broken, local_broken)
}

/// Carries out the tracker's writes in the given mode: the record and the consent grant go to
/// both stores, the queue and order IDs to localStorage only. Returns which stores threw.
pub fn apply<S: Store>(writes: &[Write], mode: StorageMode, max_age: u64, cookie: &S, local: &S) -> (bool, bool) {
    let mut cookie_broken = false;
    let mut local_broken = false;
    for (key, value) in writes {
        let both = *key == keys::RECORD || *key == keys::CONSENT;
        let targets: [(&S, bool, &mut bool); 2] = [
            (cookie, both && mode.cookie(), &mut cookie_broken),
            (local, mode.local(), &mut local_broken),
        ];
        for (store, on, broken) in targets {
            if !on || *broken {
                continue;
            }
            let result = match value {
                Some(v) => store.set(key, v, max_age),
                None => store.remove(key),
            };
            *broken |= result.is_err();
        }
    }
    (cookie_broken, local_broken)
}

/// The domains to try for a cookie on `host`, highest first: `a.shop.example.co.uk` gives
/// `co.uk`, `example.co.uk`, `shop.example.co.uk`, `a.shop.example.co.uk`. The browser refuses
/// public suffixes, so the first one that sticks is the registrable domain, shared by `www.`
/// and `shop.`. `localhost`, IP addresses and single labels give none: a host-only cookie.
pub fn cookie_domains(host: &str) -> Vec<&str> {
    let mut host = host;
    while let Some(h) = host.strip_suffix('.') {
        host = h;
    }
    let has = |c: u8| host.bytes().any(|b| b == c);
    let is_ip = host.bytes().all(|b| b.is_ascii_digit() || b == b'.') || has(b':');
    if is_ip || !has(b'.') || host.ends_with(".localhost") {
        return Vec::new();
    }
    // Byte scanning and `get` rather than `rfind` and slicing: no panic paths in the tag.
    let mut out = Vec::new();
    let bytes = host.as_bytes();
    let mut seen_dot = false;
    for i in (0..bytes.len()).rev() {
        if bytes.get(i) == Some(&b'.') {
            if seen_dot {
                if let Some(d) = host.get(i + 1..) {
                    out.push(d);
                }
            }
            seen_dot = true;
        }
    }
    out.push(host);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_highest_first() {
        let cases: &[(&str, &[&str])] = &[
            (
                "a.shop.example.co.uk",
                &["co.uk", "example.co.uk", "shop.example.co.uk", "a.shop.example.co.uk"],
            ),
            ("www.shop.example", &["shop.example", "www.shop.example"]),
            ("myapp.vercel.app", &["vercel.app", "myapp.vercel.app"]),
            ("shop.example.", &["shop.example"]),
            ("localhost", &[]),
            ("app.localhost", &[]),
            ("127.0.0.1", &[]),
            ("[::1]", &[]),
            ("intranet", &[]),
        ];
        for (host, want) in cases {
            assert_eq!(cookie_domains(host), *want, "{host}");
        }
    }

    #[test]
    fn writes_go_where_the_mode_says_and_broken_stores_are_reported() {
        let w: Vec<Write> = alloc::vec![
            (keys::RECORD, Some("1.rec".into())),
            (keys::QUEUE, Some("[]".into())),
            (keys::ORDERS, None),
        ];
        let (cookie, local) = (MemoryStore::default(), MemoryStore::default());
        assert_eq!(apply(&w, StorageMode::Both, 60, &cookie, &local), (false, false));
        assert_eq!(cookie.get(keys::RECORD), Ok(Some("1.rec".into())));
        assert_eq!(cookie.get(keys::QUEUE), Ok(None), "the queue never goes to a cookie");
        assert_eq!(local.get(keys::QUEUE), Ok(Some("[]".into())));

        let (cookie, local) = (MemoryStore::default(), MemoryStore::default());
        apply(&w, StorageMode::Cookie, 60, &cookie, &local);
        assert_eq!(
            (
                cookie.get(keys::RECORD).unwrap().is_some(),
                local.get(keys::RECORD).unwrap()
            ),
            (true, None)
        );

        let (cookie, local) = (MemoryStore::default(), MemoryStore::broken());
        assert_eq!(apply(&w, StorageMode::Both, 60, &cookie, &local), (false, true));
        assert_eq!(
            cookie.get(keys::RECORD),
            Ok(Some("1.rec".into())),
            "a broken localStorage spoils nothing else"
        );

        let (cookie, local) = (MemoryStore::default(), MemoryStore::default());
        assert_eq!(apply(&w, StorageMode::None, 60, &cookie, &local), (false, false));
        assert_eq!(
            (cookie.get(keys::RECORD), local.get(keys::RECORD)),
            (Ok(None), Ok(None))
        );
    }

    #[test]
    fn load_reads_both_and_survives_throwing_stores() {
        let (cookie, local) = (MemoryStore::default(), MemoryStore::default());
        cookie.set(keys::RECORD, "c", 1).unwrap();
        local.set(keys::RECORD, "l", 1).unwrap();
        local.set(keys::QUEUE, "q", 1).unwrap();
        let (l, cb, lb) = load(StorageMode::Both, &cookie, &local);
        assert_eq!(
            (l.cookie.as_deref(), l.local.as_deref(), l.queue.as_deref(), cb, lb),
            (Some("c"), Some("l"), Some("q"), false, false)
        );
        let (l, cb, lb) = load(StorageMode::Both, &cookie, &MemoryStore::broken());
        assert_eq!((l.cookie.as_deref(), l.local, cb, lb), (Some("c"), None, false, true));
        let (l, _, _) = load(StorageMode::Local, &cookie, &local);
        assert_eq!((l.cookie, l.local.as_deref()), (None, Some("l")));
    }
}
