//! The SQLite store's files: the schema of the main file, how a connection is opened (page
//! size, WAL, `synchronous=FULL`), and the paths and identity of the files beside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

/// The schema. `events` is clustered on its ID (`WITHOUT ROWID`): one B-tree instead of a table
/// plus a unique index, and time-ordered UUIDv7 IDs append at its right edge. The events' wire
/// JSON is not in their rows: each group commit appends one `bodies` row holding the accepted
/// events' JSON back to back, and an event points at its slice (`body_id`, byte offset, length).
/// Small index rows plus one sequential blob per commit halve the single writer's work per event.
/// The rows the events derive (touches, page counts, identities) are one more sequential blob,
/// a `pending` row: the derived tables, keyed by random visitor and click IDs, are written
/// behind the acknowledgement by the deriver, in a file of their own (`derive.rs`). `health` is
/// one row the writer rewrites to find out whether a store that failed can commit again
/// (`Store::probe`).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id TEXT NOT NULL PRIMARY KEY,
    site TEXT NOT NULL,
    type TEXT NOT NULL,
    at INTEGER NOT NULL,
    visitor TEXT,
    received INTEGER NOT NULL,
    body_id INTEGER NOT NULL,
    body_at INTEGER NOT NULL,
    body_len INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bodies (
    id INTEGER PRIMARY KEY,
    json BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS conversions (
    site TEXT NOT NULL,
    order_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    visitor TEXT,
    amount TEXT,
    currency TEXT,
    discount TEXT,
    promo_code TEXT,
    customer_status TEXT,
    items TEXT NOT NULL,
    custom TEXT,
    PRIMARY KEY (site, order_id)
);
CREATE INDEX IF NOT EXISTS conversions_at ON conversions (site, at);
CREATE INDEX IF NOT EXISTS conversions_visitor ON conversions (site, visitor, at);
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY,
    events INTEGER NOT NULL,
    rows BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS health (
    id INTEGER PRIMARY KEY,
    probes INTEGER NOT NULL
);
";

/// Version 2: orders confirmed by the merchant's server, and adjustments (refunds, corrected
/// amounts), both keyed by site first like `conversions`. A confirmation's clicks are a JSON
/// array (`ServerOrder::clicks_json`).
const SERVER_ORDERS: &str = "
CREATE TABLE server_orders (
    site TEXT NOT NULL,
    order_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    received INTEGER NOT NULL,
    visitor TEXT,
    amount TEXT,
    currency TEXT,
    discount TEXT,
    promo_code TEXT,
    customer_status TEXT,
    items TEXT NOT NULL,
    custom TEXT,
    clicks TEXT NOT NULL,
    PRIMARY KEY (site, order_id)
);
CREATE INDEX server_orders_at ON server_orders (site, at);
CREATE TABLE adjustments (
    site TEXT NOT NULL,
    adjustment_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount TEXT,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    received INTEGER NOT NULL,
    PRIMARY KEY (site, adjustment_id)
);
CREATE INDEX adjustments_order ON adjustments (site, order_id, at);
";

/// Version 3: bot filtering. Each event and conversion keeps the class of the traffic that
/// sent it (`crate::traffic::Traffic::code`: 0 human, 1 bot, 2 automation); rows stored before
/// are human.
const TRAFFIC: &str = "
ALTER TABLE events ADD COLUMN traffic INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversions ADD COLUMN traffic INTEGER NOT NULL DEFAULT 0;
";

/// Version 4: partner postbacks. `postback_plans` holds one decision per conversion and per
/// adjustment (the partner credited, if any), `postbacks` the deliveries to send (the outbox),
/// both keyed by site first; a pending delivery is due at `next_at` (`postbacks_due`), and
/// adjustments are found by arrival for the planner's sweep (`adjustments_received`).
const POSTBACKS: &str = "
CREATE TABLE postback_plans (
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    order_id TEXT NOT NULL,
    adjustment_id TEXT NOT NULL,
    partner TEXT,
    planned_at INTEGER NOT NULL,
    PRIMARY KEY (site, kind, order_id, adjustment_id)
);
CREATE TABLE postbacks (
    site TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    order_id TEXT NOT NULL,
    adjustment_id TEXT,
    partner TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    next_at INTEGER,
    delivered_at INTEGER,
    PRIMARY KEY (site, id)
);
CREATE INDEX postbacks_due ON postbacks (next_at) WHERE status = 'pending';
CREATE INDEX postbacks_created ON postbacks (site, created_at);
CREATE INDEX postbacks_order ON postbacks (site, order_id);
CREATE INDEX adjustments_received ON adjustments (site, received);
";

/// Version 5: server confirmations by arrival, for the postback planner's sweep (`unplanned`).
const SERVER_ORDERS_RECEIVED: &str = "CREATE INDEX server_orders_received ON server_orders (site, received);";

/// The main file's migrations, in order: version `i + 1` is `MIGRATIONS[i]`, applied once and
/// recorded in `utt_schema`. Version 1 is the schema files had before versions were recorded
/// (every statement `IF NOT EXISTS`, so such a file is brought to version 1 unchanged). A
/// released migration is never edited, only followed by a new one.
pub(super) const MIGRATIONS: &[&str] = &[SCHEMA, SERVER_ORDERS, TRAFFIC, POSTBACKS, SERVER_ORDERS_RECEIVED];

/// Brings the main file's schema up to the last migration, in one transaction. A file made by a
/// newer collector (a higher version) is refused.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), crate::store::StoreError> {
    use crate::store::StoreError;
    let err = |e: rusqlite::Error| StoreError(format!("sqlite: schema migration: {e}"));
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS utt_schema (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(err)?;
    let found: i64 = tx
        .query_row("SELECT coalesce(max(version), 0) FROM utt_schema", [], |r| r.get(0))
        .map_err(err)?;
    if found > MIGRATIONS.len() as i64 {
        return Err(StoreError(format!(
            "the database's schema is version {found}, newer than this collector's ({}): run the newer collector",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO utt_schema (version, applied_at) VALUES (?1, strftime('%s','now'))",
            [i as i64 + 1],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}

/// The WAL size past which the writer finishes the background checkpoint itself (so the WAL
/// starts afresh), and the size the WAL file is cut back to afterwards.
pub(super) const WAL_LIMIT: u64 = 64 * 1024 * 1024;

/// `path` with `suffix` appended to its file name (`utt.db` → `utt.db-wal`), as SQLite names the
/// files beside a database.
pub(super) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

pub(super) fn wal_path(db: &Path) -> PathBuf {
    suffixed(db, "-wal")
}

/// A file's device and inode: SQLite keeps committing to a database file that was removed or
/// replaced, and nothing of it would be found at the path again.
pub(super) type FileId = (u64, u64);

#[cfg(unix)]
pub(super) fn file_id(path: &Path) -> std::io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
pub(super) fn file_id(path: &Path) -> std::io::Result<FileId> {
    std::fs::metadata(path).map(|_| (0, 0))
}

/// The page size of a new database file.
pub const PAGE_SIZE: u32 = 8192;

pub(super) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // A new database gets 8 KiB pages (SQLite's default is 4 KiB): each commit writes half as
    // many WAL frames, each a header and a page in two system calls, and the group's body log
    // spans half as many overflow pages. Measured +5 to +16 % durable events/s in three
    // interleaved pairs of utt-bench runs with time-ordered IDs; 16 KiB was no better. It must come before the first write (the
    // journal mode below), and an existing database keeps the page size it was created with.
    conn.execute_batch(&format!("PRAGMA page_size={PAGE_SIZE};"))?;
    // FULL makes every commit fsync the WAL: an acknowledged event survives power loss, not
    // only a process crash. Group commit is what keeps that affordable.
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
    Ok(conn)
}

/// A connection's `PRAGMA synchronous` (2 is FULL) and `journal_mode`: what decides whether a
/// commit survives a power loss.
#[cfg(test)]
pub(super) fn durability(conn: &Connection) -> rusqlite::Result<(i64, String)> {
    Ok((
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
        conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
    ))
}

/// Flushes the WAL file to disk (`fdatasync`), if there is one.
pub(super) fn sync_wal(path: &Path) -> std::io::Result<()> {
    match std::fs::File::open(path) {
        Ok(f) => f.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
