//! The PostgreSQL store's schema: versioned migrations, applied once under an advisory lock
//! however many collectors start at the same time.
//!
//! Every table that grows with traffic carries `site` in its primary key and in every unique
//! constraint, so each can be distributed by site (Citus: `create_distributed_table(
//! 'events', 'site')` and so on, see docs/collector.md): idempotency (event ID, order ID) is
//! then checked on the one shard that holds the site. `utt_schema` (the applied versions) and
//! `health` (one row the writer rewrites to find out whether it can commit) do not grow.

use super::{pg, Client};
use crate::store::StoreError;

/// The key of the advisory lock that serialises migrations (any number; "utt" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x0075_7474;

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`. A released migration is never
/// edited, only followed by a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: events (with their wire JSON), conversions, and the derived tables. The keys of
    // `events` and `click_pages` start with the ID they are looked up by (event ID, click ID),
    // which spares each a second index: one B-tree written per row, not two.
    "
CREATE TABLE events (
    site text NOT NULL,
    id text NOT NULL,
    type text NOT NULL,
    at bigint NOT NULL,
    visitor text,
    received bigint NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (id, site)
);
CREATE TABLE conversions (
    site text NOT NULL,
    order_id text NOT NULL,
    event_id text NOT NULL,
    at bigint NOT NULL,
    visitor text,
    amount text,
    currency text,
    discount text,
    promo_code text,
    customer_status text,
    items text NOT NULL,
    custom text,
    PRIMARY KEY (site, order_id)
);
CREATE INDEX conversions_at ON conversions (site, at);
CREATE INDEX conversions_visitor ON conversions (site, visitor, at);
CREATE TABLE touches (
    site text NOT NULL,
    visitor text NOT NULL,
    param text NOT NULL,
    value text NOT NULL,
    click_at bigint NOT NULL,
    network text NOT NULL,
    path text NOT NULL,
    first_seen bigint NOT NULL,
    last_seen bigint NOT NULL,
    PRIMARY KEY (site, visitor, param, value, click_at)
);
CREATE INDEX touches_value ON touches (value);
CREATE TABLE identities (
    site text NOT NULL,
    kind text NOT NULL,
    value text NOT NULL,
    visitor text NOT NULL,
    at bigint NOT NULL,
    PRIMARY KEY (site, visitor, kind, value)
);
CREATE INDEX identities_value ON identities (site, kind, value, visitor);
CREATE TABLE click_pages (
    site text NOT NULL,
    value text NOT NULL,
    path text NOT NULL,
    views bigint NOT NULL,
    last_at bigint NOT NULL,
    PRIMARY KEY (value, site, path)
);
CREATE TABLE health (
    id integer PRIMARY KEY,
    probes bigint NOT NULL
);
",
    // 2: a touch's landing query string, what names its partner (empty for the touches
    // derived before; `utt-collector rebuild` derives them again with it).
    "ALTER TABLE touches ADD COLUMN landing text NOT NULL DEFAULT '';",
    // 3: orders confirmed by the merchant's server and their adjustments (refunds, corrected
    // amounts); keyed by site first, so both distribute by site with `conversions`.
    "
CREATE TABLE server_orders (
    site text NOT NULL,
    order_id text NOT NULL,
    at bigint NOT NULL,
    received bigint NOT NULL,
    visitor text,
    amount text,
    currency text,
    discount text,
    promo_code text,
    customer_status text,
    items text NOT NULL,
    custom text,
    clicks text NOT NULL,
    PRIMARY KEY (site, order_id)
);
CREATE INDEX server_orders_at ON server_orders (site, at);
CREATE TABLE adjustments (
    site text NOT NULL,
    adjustment_id text NOT NULL,
    order_id text NOT NULL,
    kind text NOT NULL,
    amount text,
    reason text NOT NULL,
    at bigint NOT NULL,
    received bigint NOT NULL,
    PRIMARY KEY (site, adjustment_id)
);
CREATE INDEX adjustments_order ON adjustments (site, order_id, at);
",
    // 4: bot filtering. Each event, conversion and touch keeps the class of the traffic that
    // sent it (`crate::traffic::Traffic::code`: 0 human, 1 bot, 2 automation); rows stored
    // before are human.
    "
ALTER TABLE events ADD COLUMN traffic integer NOT NULL DEFAULT 0;
ALTER TABLE conversions ADD COLUMN traffic integer NOT NULL DEFAULT 0;
ALTER TABLE touches ADD COLUMN traffic integer NOT NULL DEFAULT 0;
",
    // 5: partner postbacks: one decision per conversion and adjustment (`postback_plans`), the
    // deliveries to send (`postbacks`, the outbox; a pending one is due at `next_at`, claimed
    // with `FOR UPDATE SKIP LOCKED`), keyed by site first; adjustments found by arrival.
    "
CREATE TABLE postback_plans (
    site text NOT NULL,
    kind text NOT NULL,
    order_id text NOT NULL,
    adjustment_id text NOT NULL,
    partner text,
    planned_at bigint NOT NULL,
    PRIMARY KEY (site, kind, order_id, adjustment_id)
);
CREATE TABLE postbacks (
    site text NOT NULL,
    id text NOT NULL,
    kind text NOT NULL,
    order_id text NOT NULL,
    adjustment_id text,
    partner text NOT NULL,
    body text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    last_error text,
    created_at bigint NOT NULL,
    next_at bigint,
    delivered_at bigint,
    PRIMARY KEY (site, id)
);
CREATE INDEX postbacks_due ON postbacks (next_at) WHERE status = 'pending';
CREATE INDEX postbacks_created ON postbacks (site, created_at);
CREATE INDEX postbacks_order ON postbacks (site, order_id);
CREATE INDEX adjustments_received ON adjustments (site, received);
",
    // 6: the report's clicks of a site by time (store/postgres/report.rs).
    "CREATE INDEX touches_at ON touches (site, click_at);",
    // 7: server confirmations by arrival, for the postback planner's sweep (`unplanned`).
    "CREATE INDEX server_orders_received ON server_orders (site, received);",
];

/// The schema version this collector writes.
pub fn version() -> i32 {
    MIGRATIONS.len() as i32
}

/// Brings the database's schema up to [`version`], under a transaction-scoped advisory lock so
/// that collectors starting together apply each migration once: the others wait, then find it
/// applied. A database made by a newer collector (a higher version) is refused. Returns the
/// version found before.
pub async fn migrate(client: &mut Client) -> Result<i32, StoreError> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS utt_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(pg)?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM utt_schema", &[])
        .await
        .map_err(pg)?
        .get(0);
    if found > version() {
        return Err(StoreError(format!(
            "the database's schema is version {found}, newer than this collector's ({}): run the newer collector",
            version()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let v = i as i32 + 1;
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError(format!("schema migration {v}: {}", pg(e))))?;
        tx.execute("INSERT INTO utt_schema (version) VALUES ($1)", &[&v])
            .await
            .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(found)
}

/// The applied schema versions, oldest first (for tests and the operator).
pub async fn applied(client: &Client) -> Result<Vec<i32>, StoreError> {
    let rows = client
        .query("SELECT version FROM utt_schema ORDER BY version", &[])
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
