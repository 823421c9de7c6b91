//! Orders confirmed by the merchant's server (`POST /v1/conversions`) and their adjustments
//! (refunds, corrected amounts): the rows both stores keep beside the browser's conversions.
//!
//! A confirmation never replaces the browser's conversion: the two are kept side by side and
//! merged when read, by (site, order ID), so the order is counted once whichever came first,
//! and the browser's amount stays there for comparison.

use serde::{Deserialize, Serialize};

use super::{StoredConversion, Touch};

/// An order the merchant's server reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOrder {
    /// The order as the server gave it (its `event_id` is empty: a confirmation is no event),
    /// `visitor` from the `_utt` cookie when the server passed one.
    pub conversion: StoredConversion,
    /// When the collector received it (ms).
    pub received: u64,
    /// The clicks the server passed: those of the `_utt` cookie, or the one click ID it kept.
    pub clicks: Vec<Touch>,
}

/// A stored click of a confirmation, as its JSON column holds it.
#[derive(Serialize, Deserialize)]
struct ClickRow {
    param: String,
    network: String,
    value: String,
    at: u64,
    path: String,
    /// The click's landing query (its UTM context from the cookie), which names its partner.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    landing: String,
}

impl ServerOrder {
    /// The clicks as their JSON column holds them.
    pub fn clicks_json(&self) -> String {
        let rows: Vec<ClickRow> = self
            .clicks
            .iter()
            .map(|t| ClickRow {
                param: t.param.clone(),
                network: t.network.clone(),
                value: t.value.clone(),
                at: t.at,
                path: t.path.clone(),
                landing: t.landing.clone(),
            })
            .collect();
        serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
    }

    /// The clicks from their JSON column.
    pub fn clicks_from(json: &str) -> Result<Vec<Touch>, super::StoreError> {
        let rows: Vec<ClickRow> =
            serde_json::from_str(json).map_err(|e| super::StoreError(format!("stored clicks: {e}")))?;
        Ok(rows
            .into_iter()
            .map(|r| Touch {
                param: r.param,
                network: r.network,
                value: r.value,
                at: r.at,
                path: r.path,
                landing: r.landing,
                cross_device: false,
                traffic: crate::traffic::Traffic::Human,
            })
            .collect())
    }
}

/// Every confirmation and adjustment of a store.
pub type OrdersExport = (Vec<ServerOrder>, Vec<Adjustment>);

/// What an adjustment does to an order's amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustmentKind {
    /// Money given back: `amount` of it, or all that is left when there is no amount.
    Refund,
    /// The order's amount is now `amount` (replacing what it was).
    Correction,
}

impl AdjustmentKind {
    /// The wire name (`refund`, `correction`).
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustmentKind::Refund => "refund",
            AdjustmentKind::Correction => "correction",
        }
    }

    /// The kind of a wire name.
    pub fn parse(s: &str) -> Option<AdjustmentKind> {
        match s {
            "refund" => Some(AdjustmentKind::Refund),
            "correction" => Some(AdjustmentKind::Correction),
            _ => None,
        }
    }
}

/// A refund or a corrected amount of one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjustment {
    /// The site.
    pub site: String,
    /// The order adjusted.
    pub order_id: String,
    /// The merchant's ID of this adjustment: the idempotency key, per site.
    pub adjustment_id: String,
    /// Refund or correction.
    pub kind: AdjustmentKind,
    /// The exact decimal text (a refund's amount, or the corrected amount); `None` for a full refund.
    pub amount: Option<String>,
    /// Why (the merchant's words).
    pub reason: String,
    /// When it happened (ms).
    pub at: u64,
    /// When the collector received it (ms).
    pub received: u64,
}

/// What storing an adjustment did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adjusted {
    /// Stored now.
    Accepted,
    /// An adjustment with this ID was stored before: nothing changed.
    Duplicate,
    /// The site has no such order (neither from the browser nor from the server): nothing stored.
    UnknownOrder,
}
