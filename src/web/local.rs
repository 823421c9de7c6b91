//! `window.localStorage` as a [`Store`]; a storage that is missing or throws (private mode,
//! disabled, over quota) answers [`Broken`] instead of throwing into the page.

use alloc::string::String;

use web_sys::{Storage, Window};

use crate::core::store::{Broken, Store};

/// localStorage, behind the [`Store`] trait.
pub struct LocalStore {
    storage: Option<Storage>,
}

impl LocalStore {
    /// The localStorage of `window` (even reaching it can throw: then every call is [`Broken`]).
    pub fn new(window: Option<&Window>) -> LocalStore {
        LocalStore {
            storage: window.and_then(|w| w.local_storage().ok().flatten()),
        }
    }
}

impl Store for LocalStore {
    fn get(&self, key: &str) -> Result<Option<String>, Broken> {
        self.storage.as_ref().ok_or(Broken)?.get_item(key).map_err(|_| Broken)
    }

    fn set(&self, key: &str, value: &str, _max_age: u64) -> Result<(), Broken> {
        self.storage
            .as_ref()
            .ok_or(Broken)?
            .set_item(key, value)
            .map_err(|_| Broken)
    }

    fn remove(&self, key: &str) -> Result<(), Broken> {
        self.storage
            .as_ref()
            .ok_or(Broken)?
            .remove_item(key)
            .map_err(|_| Broken)
    }
}
