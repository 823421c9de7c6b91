//! The storage interface the handlers and the writer use, and the rows it hands back. SQLite is
//! the one backend today (`sqlite.rs`); a server database can be added behind the same trait.

use std::fmt;

use utt::core::wire::{Event, Status};

/// One decoded event ready to store: what the tag sent, re-written as canonical wire JSON.
#[derive(Clone, Debug)]
pub struct Record {
    /// The site the batch named.
    pub site: String,
    /// When the collector received it (its own clock, ms).
    pub received: u64,
    /// The event as wire JSON (`utt::core::wire::write_event`), what the store keeps.
    pub body: String,
    /// The decoded event.
    pub event: Event,
}

/// A click carried by a visitor's events: one touchpoint of a journey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    /// The query parameter that carried it.
    pub param: String,
    /// The network of that parameter.
    pub network: String,
    /// The click ID.
    pub value: String,
    /// When the click happened (ms).
    pub at: u64,
    /// The landing path.
    pub path: String,
    /// True when it was seen on another visitor linked by identity, not the converting one.
    pub cross_device: bool,
}

/// A stored conversion, as the read API needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredConversion {
    /// The site.
    pub site: String,
    /// The event ID of the conversion.
    pub event_id: String,
    /// The merchant's order ID.
    pub order_id: String,
    /// When it happened (ms).
    pub at: u64,
    /// The visitor who converted, if consent allowed an ID.
    pub visitor: Option<String>,
    /// The amount's exact decimal text.
    pub amount: Option<String>,
    /// The currency code.
    pub currency: Option<String>,
    /// The discount's exact decimal text.
    pub discount: Option<String>,
    /// The promo code as entered.
    pub promo_code: Option<String>,
    /// `new` or `returning`.
    pub customer_status: Option<String>,
    /// The order lines as a JSON array (decimals as strings).
    pub items: String,
    /// The custom fields as a JSON object, if any.
    pub custom: Option<String>,
}

/// Where a click ID landed, once per distinct (param, time) seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Landing {
    /// The site.
    pub site: String,
    /// The parameter that carried it.
    pub param: String,
    /// The network.
    pub network: String,
    /// The click time (ms).
    pub at: u64,
    /// The landing path.
    pub path: String,
}

/// Page views that carried a click ID, per page path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageSeen {
    /// The site.
    pub site: String,
    /// The page path (no query string).
    pub path: String,
    /// How many page views.
    pub views: u64,
    /// The latest one (ms).
    pub last_at: u64,
}

/// What the collector has seen for one click ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClickSeen {
    /// The earliest event carrying it (ms).
    pub first_seen: u64,
    /// The latest event carrying it (ms).
    pub last_seen: u64,
    /// Its landings.
    pub landings: Vec<Landing>,
    /// Page views carrying it, per path.
    pub pages: Vec<PageSeen>,
}

/// Row counts, for health checks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Stored events.
    pub events: u64,
    /// Stored conversions.
    pub conversions: u64,
}

/// A storage failure. It is logged and answered 500; its text never reaches a client.
#[derive(Debug)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// The durable store. `append` is called by the single writer thread only; reads may run on any
/// thread at the same time.
pub trait Store: Send + Sync {
    /// Stores a group of events in one durable transaction (on disk when it returns `Ok`) and
    /// says, per event and in order, whether it was new or a duplicate (by event ID, or by
    /// site and order ID for conversions). On error nothing of the group is stored.
    fn append(&self, records: &[&Record]) -> Result<Vec<Status>, StoreError>;

    /// The site's conversions at or after `since` (ms), oldest first, at most `limit`.
    fn conversions(&self, site: &str, since: u64, limit: usize) -> Result<Vec<StoredConversion>, StoreError>;

    /// The clicks seen between `from` and `to` (ms, inclusive) for a visitor and for every other
    /// visitor sharing an identity (email hash or customer ID) with it, the latter marked
    /// `cross_device`.
    fn touches(&self, site: &str, visitor: &str, from: u64, to: u64) -> Result<Vec<Touch>, StoreError>;

    /// What was seen for a click ID (on one site, or on all), or `None` if never.
    fn click(&self, value: &str, site: Option<&str>) -> Result<Option<ClickSeen>, StoreError>;

    /// Conversions that could be credited to a click ID: those of visitors who carried it or who
    /// share an identity with one who did, at or after the click's first landing, at most `limit`.
    fn conversions_near_click(
        &self,
        value: &str,
        site: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredConversion>, StoreError>;

    /// A stored event's wire JSON, or `None` if that ID is not stored.
    fn event(&self, id: &str) -> Result<Option<String>, StoreError>;

    /// Whether an event ID is stored.
    fn has_event(&self, id: &str) -> Result<bool, StoreError> {
        self.event(id).map(|e| e.is_some())
    }

    /// Row counts.
    fn counts(&self) -> Result<Counts, StoreError>;

    /// The bytes the database occupies on disk.
    fn size_bytes(&self) -> u64;

    /// Flushes and closes what can be closed (the WAL is checkpointed); called once at shutdown.
    fn close(&self) -> Result<(), StoreError>;
}
