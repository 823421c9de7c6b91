//! The partner postbacks' durable outbox, as both stores keep it: one decision per conversion
//! and per adjustment (`postback_plans`: which partner was credited, whether or not it gets a
//! postback), and one delivery row per postback to send (`postbacks`), written together in one
//! transaction, so a decision is made once however many times or collectors plan it.
//!
//! A pending delivery's `next_at` is when it may be sent next; claiming it moves `next_at` to
//! the end of a lease, so a collector that dies while sending leaves it due again after the
//! lease, and two collectors never claim it at the same moment.

/// What a postback reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostbackKind {
    /// A credited conversion (the first report of the order, browser or server).
    Conversion,
    /// A refund or corrected amount of such an order.
    Adjustment,
}

impl PostbackKind {
    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            PostbackKind::Conversion => "conversion",
            PostbackKind::Adjustment => "adjustment",
        }
    }

    /// The kind of a wire or column name.
    pub fn parse(s: &str) -> Option<PostbackKind> {
        match s {
            "conversion" => Some(PostbackKind::Conversion),
            "adjustment" => Some(PostbackKind::Adjustment),
            _ => None,
        }
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostbackStatus {
    /// Not delivered yet: due at `next_at` (or being sent, under a lease).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: a refusal that retrying cannot change, or retries past the give-up age.
    Failed,
}

impl PostbackStatus {
    /// The wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            PostbackStatus::Pending => "pending",
            PostbackStatus::Delivered => "delivered",
            PostbackStatus::Failed => "failed",
        }
    }

    /// The status of a wire or column name.
    pub fn parse(s: &str) -> Option<PostbackStatus> {
        match s {
            "pending" => Some(PostbackStatus::Pending),
            "delivered" => Some(PostbackStatus::Delivered),
            "failed" => Some(PostbackStatus::Failed),
            _ => None,
        }
    }
}

/// The decision about one conversion or adjustment: the partner credited (`None`: nobody, or a
/// click of no known partner). Keyed by (site, kind, order ID, adjustment ID; empty for a
/// conversion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The site.
    pub site: String,
    /// Conversion or adjustment.
    pub kind: PostbackKind,
    /// The order.
    pub order_id: String,
    /// The adjustment's ID, empty for a conversion.
    pub adjustment_id: String,
    /// The partner credited, if any.
    pub partner: Option<String>,
    /// When the decision was made (ms).
    pub planned_at: u64,
}

/// A postback to send, as planned: its body is frozen here (every retry sends the same bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The site.
    pub site: String,
    /// The delivery ID (the `Idempotency-Key`): a hash of site, kind, order, adjustment, partner.
    pub id: String,
    /// Conversion or adjustment.
    pub kind: PostbackKind,
    /// The order.
    pub order_id: String,
    /// The adjustment's ID, for an adjustment.
    pub adjustment_id: Option<String>,
    /// The partner it goes to.
    pub partner: String,
    /// The JSON body sent.
    pub body: String,
    /// When it was planned (ms): the give-up age counts from here.
    pub created_at: u64,
}

/// One delivery as the read API and the sender see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostbackRow {
    /// The delivery as planned.
    pub delivery: Delivery,
    /// Where it stands.
    pub status: PostbackStatus,
    /// Attempts made (answered or failed; an attempt cut by a crash is not counted).
    pub attempts: u32,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// When a pending delivery is due next (ms).
    pub next_at: Option<u64>,
    /// When it was delivered (ms).
    pub delivered_at: Option<u64>,
}

/// Which deliveries a read wants (`GET /v1/postbacks`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostbackQuery {
    /// Only those with this status.
    pub status: Option<PostbackStatus>,
    /// Only those of this order.
    pub order_id: Option<String>,
    /// Only those planned at or after this time (ms).
    pub since: u64,
    /// At most this many, oldest first.
    pub limit: usize,
}

/// What an attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempted {
    /// 2xx at this time (ms).
    Delivered(u64),
    /// Failed; due again at this time (ms).
    Retry {
        /// Why.
        error: String,
        /// When to try again.
        next_at: u64,
    },
    /// Failed for good.
    Failed(String),
}

impl Attempted {
    /// What the outbox row becomes: its status, last error (kept as it was when `None`), next
    /// attempt time and delivery time (ms).
    pub fn row(&self) -> (PostbackStatus, Option<&str>, Option<u64>, Option<u64>) {
        match self {
            Attempted::Delivered(at) => (PostbackStatus::Delivered, None, None, Some(*at)),
            Attempted::Retry { error, next_at } => (PostbackStatus::Pending, Some(error), Some(*next_at), None),
            Attempted::Failed(error) => (PostbackStatus::Failed, Some(error), None, None),
        }
    }
}

/// What a collector claims: at most `limit` deliveries of `sites` due at `now` (ms), leased
/// until `lease_until`.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    /// The sites this collector sends postbacks for.
    pub sites: &'a [String],
    /// The time due deliveries are due by (ms).
    pub now: u64,
    /// The lease's end (ms): the claimed deliveries' next attempt.
    pub lease_until: u64,
    /// The most deliveries claimed.
    pub limit: usize,
}

/// An order or adjustment whose postback decision is not made yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplanned {
    /// Conversion or adjustment.
    pub kind: PostbackKind,
    /// The order.
    pub order_id: String,
    /// The adjustment's ID, empty for a conversion.
    pub adjustment_id: String,
}

/// A delivery ID: the first 128 bits of SHA-256 over the fields that make a delivery, in hex.
/// The same conversion or adjustment for the same partner always has the same ID, on every
/// collector, so planning it twice inserts it once and the receiver sees one key.
pub fn delivery_id(site: &str, kind: PostbackKind, order_id: &str, adjustment_id: &str, partner: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [site, kind.as_str(), order_id, adjustment_id, partner] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize()[..16])
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_stable_and_distinct() {
        let a = delivery_id("shop", PostbackKind::Conversion, "A", "", "anna");
        assert_eq!(a.len(), 32);
        assert_eq!(a, delivery_id("shop", PostbackKind::Conversion, "A", "", "anna"));
        // Lengths are part of the hash: moving a character between fields changes it.
        assert_ne!(a, delivery_id("shop", PostbackKind::Conversion, "An", "", "nna"));
        assert_ne!(a, delivery_id("shop", PostbackKind::Adjustment, "A", "", "anna"));
        assert_ne!(a, delivery_id("shop2", PostbackKind::Conversion, "A", "", "anna"));
        assert_eq!(hex(&[0, 15, 16, 255]), "000f10ff");
    }
}
