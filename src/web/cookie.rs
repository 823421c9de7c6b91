//! The first-party cookie jar as a [`Store`]: `SameSite=Lax`, `Path=/`, `Secure` on https, and
//! the domain `auto` (the highest domain the browser accepts, never a public suffix).

use alloc::string::String;
use core::cell::RefCell;

use wasm_bindgen::JsCast;
use web_sys::{HtmlDocument, Window};

use crate::core::store::{cookie_domains, Broken, Store};
use crate::core::url;

/// `document.cookie`, behind the [`Store`] trait.
pub struct CookieStore {
    doc: Option<HtmlDocument>,
    host: String,
    secure: bool,
    /// `None` until probed; then `Some(None)` for a host-only cookie or `Some(Some(domain))`.
    domain: RefCell<Option<Option<String>>>,
}

impl CookieStore {
    /// The cookie jar of `window`; `domain` is the configured cookie domain (`None` for `auto`).
    pub fn new(window: Option<&Window>, domain: Option<String>) -> CookieStore {
        let href = window.and_then(|w| w.location().href().ok()).unwrap_or_default();
        CookieStore::remembering(window, &href, domain.map(Some))
    }

    /// The cookie jar of `window` for the page at `href` (its host and scheme decide the domain
    /// and `Secure`: the shell has the address already, so it costs no more calls into the page),
    /// with the domain in force as [`known`](CookieStore::known) answered on an earlier call
    /// (`None`: not probed yet).
    pub(crate) fn remembering(window: Option<&Window>, href: &str, known: Option<Option<String>>) -> CookieStore {
        CookieStore {
            doc: window
                .and_then(|w| w.document())
                .map(|d| d.unchecked_into::<HtmlDocument>()),
            host: String::from(url::host_of(href)),
            secure: href.starts_with("https:"),
            domain: RefCell::new(known),
        }
    }

    /// The domain in force if it is known (configured or probed): `Some(None)` for a host-only
    /// cookie.
    pub(crate) fn known(&self) -> Option<Option<String>> {
        self.domain.try_borrow().ok().and_then(|d| d.clone())
    }

    fn raw_get(&self, key: &str) -> Result<Option<String>, Broken> {
        let all = self.doc.as_ref().ok_or(Broken)?.cookie().map_err(|_| Broken)?;
        Ok(crate::core::parts(&all, b';')
            .filter_map(|kv| crate::core::split_byte(kv.trim_ascii(), b'='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| String::from(v)))
    }

    fn write(&self, key: &str, value: &str, max_age: u64, domain: Option<&str>) -> Result<(), Broken> {
        let mut c = String::from(key);
        c.push('=');
        c.push_str(value);
        c.push_str("; Path=/; SameSite=Lax; Max-Age=");
        crate::core::json::write_u64(&mut c, max_age);
        if self.secure {
            c.push_str("; Secure");
        }
        if let Some(d) = domain {
            c.push_str("; Domain=");
            c.push_str(d);
        }
        self.doc.as_ref().ok_or(Broken)?.set_cookie(&c).map_err(|_| Broken)
    }

    /// The domain in force, probing from the highest candidate down the first time: the browser
    /// silently refuses a cookie for a public suffix, so the first that reads back is the one.
    pub fn domain(&self) -> Option<String> {
        if let Some(d) = self.domain.try_borrow().ok().and_then(|d| d.clone()) {
            return d;
        }
        let mut found = None;
        for d in cookie_domains(&self.host) {
            if self.write("_utt_t", "1", 10, Some(d)).is_ok() && self.raw_get("_utt_t").ok().flatten().is_some() {
                let _ = self.write("_utt_t", "", 0, Some(d));
                found = Some(String::from(d));
                break;
            }
        }
        if let Ok(mut d) = self.domain.try_borrow_mut() {
            *d = Some(found.clone());
        }
        found
    }
}

impl Store for CookieStore {
    fn get(&self, key: &str) -> Result<Option<String>, Broken> {
        self.raw_get(key)
    }

    fn set(&self, key: &str, value: &str, max_age: u64) -> Result<(), Broken> {
        let domain = self.domain();
        self.write(key, value, max_age, domain.as_deref())?;
        // A cookie that does not read back was refused (cookies disabled, too large).
        match self.raw_get(key)? {
            Some(v) if v == value => Ok(()),
            _ => Err(Broken),
        }
    }

    fn remove(&self, key: &str) -> Result<(), Broken> {
        let domain = self.domain();
        self.write(key, "", 0, domain.as_deref())
    }
}
