//! The SQLite store: one file in WAL mode with `synchronous=FULL`, written by one connection
//! (the writer thread's) in one transaction per group, read by a small pool of connections.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use utt::core::wire::{CustomerStatus, Status};

use crate::store::{
    Batch, ClickSeen, Counts, DeriveStatus, Derived, Landing, PageSeen, Store, StoreError, StoredConversion, Touch,
    CLICKS_REF,
};

mod derive;
mod rebuild;

pub use derive::derived_path;
use derive::Progress;
pub use rebuild::{backup, rebuild as rebuild_derived, Rebuilt};

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
const SCHEMA: &str = "
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

const CONVERSION_COLUMNS: &str = "c.site, c.event_id, c.order_id, c.at, c.visitor, c.amount, c.currency, c.discount, \
     c.promo_code, c.customer_status, c.items, c.custom";

/// The site's conversions since a time (`conversions_at` index).
fn conversions_sql() -> String {
    format!(
        "SELECT {CONVERSION_COLUMNS} FROM conversions c WHERE c.site = ?1 AND c.at >= ?2 ORDER BY c.at, c.order_id LIMIT ?3"
    )
}

/// A visitor's touches and those of visitors sharing an identity with it (`touches` primary key,
/// then identities by visitor and by value). CROSS JOIN fixes the join order (SQLite does not
/// reorder it), so the site's identities are never scanned.
const TOUCHES_SQL: &str = "SELECT param, network, value, click_at, path, visitor <> ?2 FROM touches \
                 WHERE site = ?1 AND click_at BETWEEN ?3 AND ?4 AND visitor IN ( \
                   SELECT ?2 UNION \
                   SELECT i2.visitor FROM identities i1 CROSS JOIN identities i2 \
                     ON i2.site = i1.site AND i2.kind = i1.kind AND i2.value = i1.value \
                   WHERE i1.site = ?1 AND i1.visitor = ?2) \
                 ORDER BY click_at";

/// One click ID's landings (`touches_value` index).
const CLICK_SQL: &str = "SELECT site, param, network, click_at, path, min(first_seen), max(last_seen) FROM touches \
                 WHERE value = ?1 AND (?2 IS NULL OR site = ?2) GROUP BY site, param, network, click_at, path \
                 ORDER BY click_at LIMIT 100";

/// One click ID's page views, a row per site (`click_pages` primary key starts with the value).
const PAGES_SQL: &str = "SELECT site, pages FROM click_pages WHERE value = ?1 AND (?2 IS NULL OR site = ?2)";

/// The most page paths the click API answers with: the most recently viewed.
const PAGES_SHOWN: usize = 100;

/// Conversions of visitors who carried a click ID or share an identity with one who did.
fn near_click_sql() -> String {
    format!(
        "WITH carriers AS ( \
                   SELECT site, visitor, min(click_at) AS since FROM touches \
                   WHERE value = ?1 AND (?2 IS NULL OR site = ?2) GROUP BY site, visitor), \
                 linked AS ( \
                   SELECT site, visitor, since FROM carriers UNION \
                   SELECT i2.site, i2.visitor, k.since FROM carriers k \
                     CROSS JOIN identities i1 ON i1.site = k.site AND i1.visitor = k.visitor \
                     CROSS JOIN identities i2 ON i2.site = i1.site AND i2.kind = i1.kind AND i2.value = i1.value) \
                 SELECT DISTINCT {CONVERSION_COLUMNS} FROM linked l \
                   CROSS JOIN conversions c ON c.site = l.site AND c.visitor = l.visitor AND c.at >= l.since \
                 ORDER BY c.at LIMIT ?3"
    )
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    /// The main file as opened, to notice it removed or replaced (`Store::check`).
    file: FileId,
    /// The derived tables' file, as the readers attach it.
    derived: String,
    writer: Mutex<WriterConn>,
    readers: Mutex<Vec<Connection>>,
    stop: Arc<AtomicBool>,
    checkpointer: Mutex<Option<thread::JoinHandle<()>>>,
    progress: Arc<Progress>,
    deriver: Mutex<Option<thread::JoinHandle<()>>>,
    /// How the deriver's connection to the derived file was set up, read just before it was
    /// handed to its thread (the tests check that it syncs like the writer's).
    #[cfg(test)]
    derived_durability: (i64, String),
}

/// The writer's connection, and the pending rows up to which it has deleted (derived and
/// durable in the derived file).
struct WriterConn {
    conn: Connection,
    deleted: u64,
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError(format!("sqlite: {e}"))
}

/// SQLite stores signed 64-bit integers; the handlers only pass timestamps below 2^53.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The WAL size past which the writer finishes the background checkpoint itself (so the WAL
/// starts afresh), and the size the WAL file is cut back to afterwards.
const WAL_LIMIT: u64 = 64 * 1024 * 1024;

/// `path` with `suffix` appended to its file name (`utt.db` → `utt.db-wal`), as SQLite names the
/// files beside a database.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn wal_path(db: &Path) -> PathBuf {
    suffixed(db, "-wal")
}

/// A file's device and inode: SQLite keeps committing to a database file that was removed or
/// replaced, and nothing of it would be found at the path again.
type FileId = (u64, u64);

#[cfg(unix)]
fn file_id(path: &Path) -> std::io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &Path) -> std::io::Result<FileId> {
    std::fs::metadata(path).map(|_| (0, 0))
}

/// The page size of a new database file.
pub const PAGE_SIZE: u32 = 8192;

fn open(path: &Path) -> rusqlite::Result<Connection> {
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
fn durability(conn: &Connection) -> rusqlite::Result<(i64, String)> {
    Ok((
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
        conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
    ))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and starts its background checkpointer.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let derived_file = derived_path(path);
        let derived_file = derived_file
            .to_str()
            .ok_or_else(|| StoreError(format!("{} is not UTF-8", derived_file.display())))?
            .to_string();
        let writer = open(path).map_err(err)?;
        writer.execute_batch(SCHEMA).map_err(err)?;
        // The writer never checkpoints itself: a checkpoint copies pages and fsyncs the main
        // file, which would stall every request waiting on the writer. A separate thread does it.
        // The writer's page cache holds the right edges of the B-trees it appends to: 16 MB is
        // plenty, and a bigger one costs at every commit (SQLite walks the cache's hash table to
        // drop pages past the end of the file): 8 % of the writer's samples with 64 MB, 3 % with
        // 16 MB.
        writer
            .execute_batch(&format!(
                "PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-16384; PRAGMA journal_size_limit={WAL_LIMIT};"
            ))
            .map_err(err)?;
        let (derived, applied) = derive::open_derived(&writer, path)?;
        // The deriver's page cache holds what it can of the derived B-trees, written at random
        // places: the more of them it holds, the fewer pages it reads before changing them.
        derived
            .execute_batch(&format!(
                "PRAGMA cache_size=-65536; PRAGMA journal_size_limit={WAL_LIMIT};"
            ))
            .map_err(err)?;
        // A process that died inside a commit may have left WAL frames that were written but
        // never synced: SQLite now treats them as committed, though they are only in the page
        // cache. They are made durable before anything reads them: otherwise a retried event
        // found there would be answered `duplicate`, and the deriver would make their rows
        // durable in its own file, while a power loss could still take the events back.
        sync_wal(&wal_path(path)).map_err(|e| StoreError(format!("fsync of the WAL: {e}")))?;
        // Pending rows left by a crash (or by a stop before the deriver finished) are derived
        // first; reads wait for them.
        let (last, lag): (i64, i64) = writer
            .query_row(
                "SELECT coalesce(max(id), 0), coalesce(sum(events), 0) FROM pending WHERE id > ?1",
                [int(applied)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        let progress = Arc::new(Progress::default());
        {
            let mut m = progress.lock();
            m.applied = applied;
            m.committed = applied.max(last as u64);
            m.lag = lag as u64;
        }
        #[cfg(test)]
        let derived_durability = durability(&derived).map_err(err)?;
        let deriver = {
            let src = open(path).map_err(err)?;
            src.execute_batch("PRAGMA query_only=1;").map_err(err)?;
            let progress = progress.clone();
            thread::Builder::new()
                .name("utt-deriver".into())
                .spawn(move || derive::run(src, derived, progress))
                .map_err(|e| StoreError(format!("deriver thread: {e}")))?
        };
        let stop = Arc::new(AtomicBool::new(false));
        let checkpointer = {
            let conn = open(path).map_err(err)?;
            let stop = stop.clone();
            thread::Builder::new()
                .name("utt-checkpoint".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(100));
                        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                            tracing::warn!(error = %e, "checkpoint failed");
                        }
                    }
                })
                .map_err(|e| StoreError(format!("checkpoint thread: {e}")))?
        };
        let file = file_id(path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            file,
            derived: derived_file,
            writer: Mutex::new(WriterConn {
                conn: writer,
                deleted: 0,
            }),
            readers: Mutex::new(Vec::new()),
            stop,
            checkpointer: Mutex::new(Some(checkpointer)),
            progress,
            deriver: Mutex::new(Some(deriver)),
            #[cfg(test)]
            derived_durability,
        })
    }

    /// A read of the derived tables: waits until what was acknowledged before it is derived.
    fn read_derived<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        self.progress.wait_for_reads();
        self.read(f)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = open(&self.path).map_err(err)?;
                // The derived tables' names are not in the main file: unqualified, they name
                // the attached file's.
                c.execute("ATTACH DATABASE ?1 AS derived", [&self.derived])
                    .map_err(err)?;
                c.execute_batch("PRAGMA query_only=1;").map_err(err)?;
                c
            }
        };
        let out = f(&conn).map_err(err);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Without `close` (tests, errors), still let the checkpoint thread and the deriver end.
        self.stop.store(true, Ordering::Relaxed);
        self.progress.stop();
    }
}

pub use crate::store::url_path;

/// The decimal digits of `n`.
/// Appends `n` in decimal (`write!` cost 3 % of the store's instructions here).
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let from = out.len();
    let mut n = n;
    loop {
        out.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out[from..].reverse();
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Flushes the WAL file to disk (`fdatasync`), if there is one.
fn sync_wal(path: &Path) -> std::io::Result<()> {
    match std::fs::File::open(path) {
        Ok(f) => f.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A log entry whose click list is a reference: (before, offset, length, after).
fn split_clicks_ref(entry: &[u8]) -> Option<(&[u8], i64, i64, &[u8])> {
    let a = entry.iter().position(|&b| b == CLICKS_REF)?;
    let n = entry[a + 1..].iter().position(|&b| b == CLICKS_REF)? + a + 1;
    let r = std::str::from_utf8(&entry[a + 1..n]).ok()?;
    let (at, len) = r.split_once(',')?;
    Some((&entry[..a], at.parse().ok()?, len.parse().ok()?, &entry[n + 1..]))
}

impl Store for SqliteStore {
    fn append(&self, batches: &[&Batch]) -> Result<Vec<Status>, StoreError> {
        // Events committed to a file no longer at the path would be lost at the next start.
        self.check()?;
        // A deriver far behind slows the acknowledgements rather than falling further behind.
        self.progress.wait_for_room();
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.progress.lock().applied;
        let WriterConn { conn, deleted } = &mut *w;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        // Pending rows the deriver has made durable in its own file are done with.
        if applied > *deleted {
            tx.prepare_cached("DELETE FROM pending WHERE id <= ?1")
                .and_then(|mut st| st.execute([int(applied)]))
                .map_err(err)?;
        }
        let total: usize = batches.iter().map(|b| b.records.len()).sum();
        let mut statuses = Vec::with_capacity(total);
        // The group's body log: accepted events' JSON, one per line.
        let body_id: i64 = tx
            .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM bodies")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(err)?;
        let mut log: Vec<u8> =
            Vec::with_capacity(batches.iter().flat_map(|b| &b.records).map(|r| r.body.len() + 1).sum());
        // The rows the accepted events derive, for the deriver (`Derived::encode`).
        let mut rows: Vec<u8> = Vec::new();
        {
            let mut ins_event = tx
                .prepare_cached(
                    "INSERT INTO events (id, site, type, at, visitor, received, body_id, body_at, body_len) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
                )
                .map_err(err)?;
            let mut ins_conv = tx
                .prepare_cached(
                    "INSERT INTO conversions (site, order_id, event_id, at, visitor, amount, currency, discount, \
                     promo_code, customer_status, items, custom) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                     ON CONFLICT (site, order_id) DO NOTHING",
                )
                .map_err(err)?;
            for &b in batches {
                let start = statuses.len();
                // Where each accepted event's click list landed in the log, for the events of
                // the batch that repeat it.
                let mut clicks_at: Vec<Option<usize>> = vec![None; b.records.len()];
                for (k, r) in b.records.iter().enumerate() {
                    // The body as the log keeps it: whole, or with its click list replaced by
                    // a reference to the same text already in this log.
                    let shared = r
                        .same_clicks_as
                        .and_then(|j| Some((clicks_at[j]?, b.records[j].clicks?)));
                    let compact = match (shared, r.clicks) {
                        (Some((at, (c, d))), Some((x, y))) => Some((at, d - c, x, y)),
                        _ => None,
                    };
                    let entry_len = match compact {
                        Some((at, len, x, y)) => x + (r.body.len() - y) + 2 + digits(at) + 1 + digits(len),
                        None => r.body.len(),
                    };
                    let fresh = ins_event
                        .execute(params![
                            r.id,
                            b.site,
                            r.kind,
                            int(r.at),
                            r.visitor,
                            int(r.received),
                            body_id,
                            log.len() as i64,
                            entry_len as i64
                        ])
                        .map_err(err)?;
                    if fresh == 0 {
                        statuses.push(Status::Duplicate);
                        continue;
                    }
                    if let Some(o) = &r.order {
                        let status = o.customer_status.map(|s| match s {
                            CustomerStatus::New => "new",
                            CustomerStatus::Returning => "returning",
                        });
                        let fresh = ins_conv
                            .execute(params![
                                b.site,
                                o.order_id,
                                r.id,
                                int(r.at),
                                r.visitor,
                                o.amount.as_ref().map(|a| &a.text),
                                o.currency,
                                o.discount.as_ref().map(|a| &a.text),
                                o.promo_code,
                                status,
                                r.items.as_deref().unwrap_or("[]"),
                                o.custom.as_ref().map(|c| c.to_text()),
                            ])
                            .map_err(err)?;
                        if fresh == 0 {
                            // Same order ID under a new event ID: the order is counted once, so
                            // the event row just written goes too.
                            tx.execute("DELETE FROM events WHERE id = ?1", [&r.id]).map_err(err)?;
                            statuses.push(Status::Duplicate);
                            continue;
                        }
                    }
                    statuses.push(Status::Accepted);
                    let body = r.body.as_bytes();
                    let before = log.len();
                    match compact {
                        Some((at, len, x, y)) => {
                            log.extend_from_slice(&body[..x]);
                            log.push(CLICKS_REF);
                            push_decimal(&mut log, at);
                            log.push(b',');
                            push_decimal(&mut log, len);
                            log.push(CLICKS_REF);
                            log.extend_from_slice(&body[y..]);
                        }
                        None => {
                            if let Some((x, _)) = r.clicks {
                                clicks_at[k] = Some(before + x);
                            }
                            log.extend_from_slice(body);
                        }
                    }
                    debug_assert_eq!(log.len() - before, entry_len);
                    log.push(b'\n');
                }
                let mine = &statuses[start..];
                if mine.iter().all(|s| *s == Status::Accepted) {
                    b.derived.encode(&b.site, &mut rows);
                } else if mine.contains(&Status::Accepted) {
                    // Duplicates add nothing: derive the rows of the new events only, read back
                    // from their bodies (the decoded events were freed on the request side).
                    let mut fresh = Vec::new();
                    for (r, _) in b.records.iter().zip(mine).filter(|(_, s)| **s == Status::Accepted) {
                        fresh.push(r.event()?);
                    }
                    Derived::of(&fresh).encode(&b.site, &mut rows);
                }
            }
            if !log.is_empty() {
                tx.prepare_cached("INSERT INTO bodies (id, json) VALUES (?1, ?2)")
                    .and_then(|mut st| st.execute(params![body_id, log]))
                    .map_err(err)?;
            }
        }
        let accepted = statuses.iter().filter(|s| **s == Status::Accepted).count() as u64;
        let pending_id = self.progress.lock().committed + 1;
        if accepted > 0 && !rows.is_empty() {
            tx.prepare_cached("INSERT INTO pending (id, events, rows) VALUES (?1, ?2, ?3)")
                .and_then(|mut st| st.execute(params![int(pending_id), int(accepted), rows]))
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        *deleted = (*deleted).max(applied);
        if accepted > 0 && !rows.is_empty() {
            self.progress.committed(pending_id, accepted);
        }
        // Under constant writing the background checkpoint never quite catches up (new frames
        // land while it copies), so the WAL would grow without bound. Right after a commit
        // nothing new is being appended: finishing the copy here lets the next transaction
        // restart the WAL from its beginning. Most frames are already copied, so this is short.
        if std::fs::metadata(wal_path(&self.path)).is_ok_and(|m| m.len() > WAL_LIMIT) {
            // Busy (the background checkpoint is running) is fine: the next commit tries again.
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        Ok(statuses)
    }

    fn conversions(&self, site: &str, since: u64, limit: usize) -> Result<Vec<StoredConversion>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(&conversions_sql())?;
            let rows = st.query_map(params![site, int(since), limit as i64], conversion_row)?;
            rows.collect()
        })
    }

    fn touches(&self, site: &str, visitor: &str, from: u64, to: u64) -> Result<Vec<Touch>, StoreError> {
        self.read_derived(|c| {
            let mut st = c.prepare_cached(TOUCHES_SQL)?;
            let rows = st.query_map(params![site, visitor, int(from), int(to)], |r| {
                Ok(Touch {
                    param: r.get(0)?,
                    network: r.get(1)?,
                    value: r.get(2)?,
                    at: r.get::<_, i64>(3)? as u64,
                    path: r.get(4)?,
                    cross_device: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    fn click(&self, value: &str, site: Option<&str>) -> Result<Option<ClickSeen>, StoreError> {
        self.read_derived(|c| {
            let mut st = c.prepare_cached(CLICK_SQL)?;
            let mut first_seen = u64::MAX;
            let mut last_seen = 0;
            let mut landings = Vec::new();
            let mut rows = st.query(params![value, site])?;
            while let Some(r) = rows.next()? {
                first_seen = first_seen.min(r.get::<_, i64>(5)? as u64);
                last_seen = last_seen.max(r.get::<_, i64>(6)? as u64);
                landings.push(Landing {
                    site: r.get(0)?,
                    param: r.get(1)?,
                    network: r.get(2)?,
                    at: r.get::<_, i64>(3)? as u64,
                    path: r.get(4)?,
                });
            }
            let mut st = c.prepare_cached(PAGES_SQL)?;
            let mut rows = st.query(params![value, site])?;
            let mut pages = Vec::new();
            while let Some(r) = rows.next()? {
                let site: String = r.get(0)?;
                let bytes: Vec<u8> = r.get(1)?;
                let each = derive::decode_pages(&bytes).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
                })?;
                pages.extend(each.into_iter().map(|p| PageSeen {
                    site: site.clone(),
                    path: p.path.to_string(),
                    views: p.views,
                    last_at: p.last_at,
                }));
            }
            pages.sort_by(|x, y| {
                y.last_at
                    .cmp(&x.last_at)
                    .then_with(|| (&x.site, &x.path).cmp(&(&y.site, &y.path)))
            });
            pages.truncate(PAGES_SHOWN);
            if landings.is_empty() && pages.is_empty() {
                return Ok(None);
            }
            if landings.is_empty() {
                // Page views without a visitor ID (consent denied) leave no touch rows.
                first_seen = pages.iter().map(|p| p.last_at).min().unwrap_or(0);
                last_seen = pages.iter().map(|p| p.last_at).max().unwrap_or(0);
            }
            Ok(Some(ClickSeen {
                first_seen,
                last_seen,
                landings,
                pages,
            }))
        })
    }

    fn conversions_near_click(
        &self,
        value: &str,
        site: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredConversion>, StoreError> {
        self.read_derived(|c| {
            let mut st = c.prepare_cached(&near_click_sql())?;
            let rows = st.query_map(params![value, site, limit as i64], conversion_row)?;
            rows.collect()
        })
    }

    fn event(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            let found: Option<(i64, Vec<u8>)> = c
                .query_row(
                    "SELECT e.body_id, substr(b.json, e.body_at + 1, e.body_len) FROM events e \
                     JOIN bodies b ON b.id = e.body_id WHERE e.id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((body_id, entry)) = found else { return Ok(None) };
            let text = match split_clicks_ref(&entry) {
                None => entry,
                Some((prefix, at, len, suffix)) => {
                    let clicks: Vec<u8> = c.query_row(
                        "SELECT substr(json, ?2 + 1, ?3) FROM bodies WHERE id = ?1",
                        params![body_id, at, len],
                        |r| r.get(0),
                    )?;
                    [prefix, &clicks, suffix].concat()
                }
            };
            String::from_utf8(text)
                .map(Some)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e)))
        })
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        self.read(|c| {
            let events: i64 = c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
            let conversions: i64 = c.query_row("SELECT count(*) FROM conversions", [], |r| r.get(0))?;
            Ok(Counts {
                events: events as u64,
                conversions: conversions as u64,
            })
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        let gone = |why: String| {
            StoreError(format!(
                "the database file {} {why}: commits would not reach it (restart the collector)",
                self.path.display()
            ))
        };
        match file_id(&self.path) {
            Ok(id) if id == self.file => Ok(()),
            Ok(_) => Err(gone("was replaced".into())),
            Err(e) => Err(gone(format!("is gone ({e})"))),
        }
    }

    fn probe(&self) -> Result<(), StoreError> {
        self.check()?;
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute(
            "INSERT INTO health (id, probes) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET probes = probes + 1",
            [],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn size_bytes(&self) -> u64 {
        let derived = derived_path(&self.path);
        [self.path.clone(), wal_path(&self.path), wal_path(&derived), derived]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    fn derive_status(&self) -> DeriveStatus {
        let m = self.progress.lock();
        DeriveStatus {
            lag: m.lag,
            failures: m.failures,
            failing: m.failing,
        }
    }

    fn close(&self) -> Result<(), StoreError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.checkpointer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
        // The writer has stopped: the deriver derives what is pending, checkpoints its file
        // and stops.
        self.progress.stop();
        if let Some(h) = self.deriver.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
        self.readers.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(err)
    }
}

fn conversion_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredConversion> {
    Ok(StoredConversion {
        site: r.get(0)?,
        event_id: r.get(1)?,
        order_id: r.get(2)?,
        at: r.get::<_, i64>(3)? as u64,
        visitor: r.get(4)?,
        amount: r.get(5)?,
        currency: r.get(6)?,
        discount: r.get(7)?,
        promo_code: r.get(8)?,
        customer_status: r.get(9)?,
        items: r.get(10)?,
        custom: r.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::journey;
    use utt::core::wire;

    #[test]
    fn decimals_are_written_as_digits() {
        for n in [0usize, 7, 10, 99, 12_345, usize::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
            assert_eq!(digits(n), n.to_string().len());
        }
    }

    /// A new database is made with 8 KiB pages (the WAL's frames follow), and reopening it
    /// keeps them.
    #[test]
    fn new_databases_use_the_larger_page() {
        let dir = fresh_dir("utt-page");
        let path = dir.join("page.db");
        for _ in 0..2 {
            let store = SqliteStore::open(&path).unwrap();
            let size: u32 = store
                .read(|c| c.query_row("PRAGMA page_size", [], |r| r.get(0)))
                .unwrap();
            assert_eq!(size, PAGE_SIZE);
            let mode: String = store
                .read(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
                .unwrap();
            assert_eq!(mode, "wal");
            store.close().unwrap();
        }
        // The file's header says so too (bytes 16-17, big-endian).
        let head = std::fs::read(&path).unwrap();
        assert_eq!(u16::from_be_bytes([head[16], head[17]]) as u32, PAGE_SIZE);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An acknowledged event must survive a power loss, not only a crash: the connections that
    /// write, the writer's to the main file and the deriver's to the derived file, commit with
    /// `synchronous=FULL` (2: the WAL is fsynced at every commit) in WAL mode, as the collector
    /// opens them, for a new database and for one opened again.
    #[test]
    fn the_writing_connections_sync_every_commit() {
        let dir = fresh_dir("utt-sync");
        let path = dir.join("sync.db");
        for _ in 0..2 {
            let store = SqliteStore::open(&path).unwrap();
            let main = durability(&store.writer.lock().unwrap().conn).unwrap();
            assert_eq!(main, (2, "wal".to_string()), "the writer's connection to the main file");
            assert_eq!(
                store.derived_durability,
                (2, "wal".to_string()),
                "the deriver's connection to the derived file"
            );
            store.close().unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every read query finds its rows through an index: a dropped index or a reordered join
    /// that turns one into a scan of a whole table fails here, not in production.
    #[test]
    fn read_queries_use_indexes() {
        let dir = fresh_dir("utt-plan");
        let store = SqliteStore::open(&dir.join("plan.db")).unwrap();
        let queries = [
            conversions_sql(),
            TOUCHES_SQL.into(),
            CLICK_SQL.into(),
            PAGES_SQL.into(),
            near_click_sql(),
        ];
        store
            .read(|c| {
                for q in &queries {
                    let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {q}"))?;
                    let n = st.parameter_count();
                    let args: Vec<&dyn rusqlite::ToSql> = (0..n).map(|_| &1i64 as &dyn rusqlite::ToSql).collect();
                    let plan: Vec<String> = st
                        .query_map(args.as_slice(), |r| r.get::<_, String>(3))?
                        .collect::<rusqlite::Result<_>>()?;
                    // Scanning a CTE or a constant row is fine; scanning a table is not.
                    let scans: Vec<&String> = plan
                        .iter()
                        .filter(|l| {
                            l.starts_with("SCAN ")
                                && !["SCAN CONSTANT ROW", "SCAN carriers", "SCAN k", "SCAN l"].contains(&l.as_str())
                        })
                        .collect();
                    assert!(scans.is_empty(), "{q}\n{plan:#?}");
                    // An index, or the primary key of a `WITHOUT ROWID` table (which is one).
                    let by_index = |l: &String| l.contains("INDEX") || l.contains("USING PRIMARY KEY");
                    assert!(plan.iter().any(by_index), "{q}\n{plan:#?}");
                }
                Ok(())
            })
            .unwrap();
        store.close().unwrap();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A batch's repeated click list is kept once in the body log; every event still reads back
    /// as its exact canonical JSON, also when the event that first carried the list was a
    /// duplicate (then the others keep it whole).
    #[test]
    fn bodies_read_back_exactly_with_shared_click_lists() {
        let dir = fresh_dir("utt-bodies");
        let store = SqliteStore::open(&dir.join("bodies.db")).unwrap();
        let events = journey();
        let batch = |from: usize, to: usize| Batch::new("demo", 1, events[from..to].to_vec());
        let all = events.len();
        let shared = batch(0, all)
            .records
            .iter()
            .filter(|r| r.same_clicks_as.is_some())
            .count();
        assert!(shared >= 2, "the journey repeats its click list");
        // The first event alone, then the whole batch (its first event, which carried the
        // click list first, now a duplicate), then all of it again.
        assert_eq!(store.append(&[&batch(0, 1)]).unwrap(), vec![Status::Accepted]);
        let second = store.append(&[&batch(0, all)]).unwrap();
        assert_eq!(second[0], Status::Duplicate);
        assert!(second[1..].iter().all(|s| *s == Status::Accepted), "{second:?}");
        assert!(store
            .append(&[&batch(0, all)])
            .unwrap()
            .iter()
            .all(|s| *s == Status::Duplicate));
        // And a batch whose first event is new: its followers keep a reference.
        let other = dir.join("other.db");
        let fresh = SqliteStore::open(&other).unwrap();
        assert!(fresh
            .append(&[&batch(0, all)])
            .unwrap()
            .iter()
            .all(|s| *s == Status::Accepted));
        let refs: i64 = fresh
            .read(|c| {
                c.query_row("SELECT count(*) FROM bodies WHERE instr(json, x'01') > 0", [], |r| {
                    r.get(0)
                })
            })
            .unwrap();
        assert_eq!(refs, 1, "the shared click list is kept as a reference");
        for e in &events {
            let mut want = String::new();
            wire::write_event(&mut want, e);
            assert_eq!(fresh.event(&e.id).unwrap(), Some(want));
        }
        fresh.close().unwrap();
        drop(fresh);
        for e in &events {
            let mut want = String::new();
            wire::write_event(&mut want, e);
            assert_eq!(store.event(&e.id).unwrap(), Some(want));
        }
        store.close().unwrap();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A retried batch (some events already stored) adds the derived rows of its new events
    /// only, read back from their bodies: the tables end as if each event came once.
    #[test]
    fn a_partly_duplicate_batch_derives_the_same_rows_as_one_batch() {
        let dir = fresh_dir("utt-rederive");
        let events = journey();
        let all = events.len();
        let once = SqliteStore::open(&dir.join("once.db")).unwrap();
        once.append(&[&Batch::new("demo", 1, events.clone())]).unwrap();
        let twice = SqliteStore::open(&dir.join("twice.db")).unwrap();
        twice.append(&[&Batch::new("demo", 1, events[..2].to_vec())]).unwrap();
        let second = twice.append(&[&Batch::new("demo", 1, events.clone())]).unwrap();
        assert_eq!(second[..2], [Status::Duplicate, Status::Duplicate]);
        assert!(second[2..].iter().all(|s| *s == Status::Accepted), "{second:?}");
        let (a, b) = (derived_tables(&once), derived_tables(&twice));
        assert!(
            !a[0].is_empty() && !a[1].is_empty() && !a[2].is_empty(),
            "the journey derives every table: {a:?}"
        );
        assert_eq!(a, b);
        assert!(all > 2);
        once.close().unwrap();
        twice.close().unwrap();
        drop((once, twice));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An empty folder of this test process's own.
    fn fresh_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The pending rows `append` would write for the events, as site `demo`.
    fn journey_rows(events: &[wire::Event]) -> Vec<u8> {
        let mut rows = Vec::new();
        Derived::of(events).encode("demo", &mut rows);
        rows
    }

    /// A new store at `db` whose deriver never ran: `pending` holds these rows (events, bytes),
    /// numbered from 1.
    fn with_pending(db: &Path, pending: &[(usize, Vec<u8>)]) {
        SqliteStore::open(db).unwrap().close().unwrap();
        let c = Connection::open(db).unwrap();
        for (i, (events, rows)) in pending.iter().enumerate() {
            c.execute(
                "INSERT INTO pending (id, events, rows) VALUES (?1, ?2, ?3)",
                params![i as i64 + 1, *events as i64, rows],
            )
            .unwrap();
        }
    }

    /// The derived tables as format 0 kept them, in the main file.
    const FORMAT_0_DERIVED: &str = "
        CREATE TABLE touches (
            site TEXT NOT NULL, visitor TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL,
            click_at INTEGER NOT NULL, network TEXT NOT NULL, path TEXT NOT NULL,
            first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
            PRIMARY KEY (site, visitor, param, value, click_at)) WITHOUT ROWID;
        CREATE INDEX touches_value ON touches (value);
        CREATE TABLE identities (
            site TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, visitor TEXT NOT NULL,
            at INTEGER NOT NULL, PRIMARY KEY (site, visitor, kind, value)) WITHOUT ROWID;
        CREATE INDEX identities_value ON identities (site, kind, value, visitor);
        CREATE TABLE click_pages (
            site TEXT NOT NULL, value TEXT NOT NULL, path TEXT NOT NULL, views INTEGER NOT NULL,
            last_at INTEGER NOT NULL, PRIMARY KEY (value, site, path)) WITHOUT ROWID;";

    /// The derived rows of a store, every table, in key order.
    fn derived_tables(store: &SqliteStore) -> Vec<Vec<Vec<rusqlite::types::Value>>> {
        store
            .read_derived(|c| {
                let mut out = Vec::new();
                for sql in [
                    "SELECT site, visitor, param, value, click_at, network, path, first_seen, last_seen FROM touches ORDER BY 1, 2, 3, 4, 5",
                    "SELECT site, value, pages, '', '', '', '', '', '' FROM click_pages ORDER BY 1, 2",
                    "SELECT site, kind, value, visitor, at, '', '', '', '' FROM identities ORDER BY 1, 2, 3, 4",
                ] {
                    let mut st = c.prepare(sql)?;
                    let rows = st.query_map([], |r| {
                        (0..9).map(|i| r.get::<_, rusqlite::types::Value>(i)).collect::<rusqlite::Result<Vec<_>>>()
                    })?;
                    out.push(rows.collect::<rusqlite::Result<Vec<_>>>()?);
                }
                Ok(out)
            })
            .unwrap()
    }

    /// The golden journey's events again under new IDs (their first eight characters `prefix`),
    /// without its conversions (whose order IDs would be duplicates): new events with the same
    /// visitor and clicks.
    fn journey_again(prefix: &str) -> Vec<wire::Event> {
        let mut events = journey();
        events.retain(|e| !matches!(e.kind, utt::core::wire::Kind::Conversion(_)));
        for e in &mut events {
            e.id.replace_range(..8, prefix);
        }
        events
    }

    /// The derived rows of the golden journey stored as one batch in a new database at `db`.
    fn journey_tables(db: &Path) -> Vec<Vec<Vec<rusqlite::types::Value>>> {
        let store = SqliteStore::open(db).unwrap();
        store.append(&[&Batch::new("demo", 1, journey())]).unwrap();
        let tables = derived_tables(&store);
        store.close().unwrap();
        tables
    }

    /// A database made before the derived tables had their own file (format 0) keeps its rows:
    /// they move to `<db>-derived` at the first open, once, and the main file loses its copies.
    #[test]
    fn an_older_database_moves_its_derived_rows_to_their_own_file() {
        let dir = fresh_dir("utt-move");
        // The same journey stored by this version, for the rows it should end with.
        let want = journey_tables(&dir.join("now.db"));
        // The old layout: the derived tables in the main file, user_version 0, `click_pages`
        // with a row per path; filled with the same rows.
        let old = dir.join("old.db");
        {
            let c = Connection::open(&old).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute_batch(FORMAT_0_DERIVED).unwrap();
            c.execute_batch(&format!(
                "ATTACH DATABASE '{}' AS now;",
                derived_path(&dir.join("now.db")).display()
            ))
            .unwrap();
            for (table, _) in derive::TABLES {
                c.execute_batch(&format!("INSERT INTO main.{table} SELECT * FROM now.{table};"))
                    .unwrap();
            }
            let pages: Vec<(String, String, Vec<u8>)> = {
                let mut st = c.prepare("SELECT site, value, pages FROM now.click_pages").unwrap();
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
                rows.collect::<rusqlite::Result<_>>().unwrap()
            };
            assert!(!pages.is_empty());
            for (site, value, bytes) in &pages {
                for p in derive::decode_pages(bytes).unwrap() {
                    c.execute(
                        "INSERT INTO click_pages (site, value, path, views, last_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![site, value, p.path, p.views as i64, p.last_at as i64],
                    )
                    .unwrap();
                }
            }
            c.execute_batch("DETACH DATABASE now;").unwrap();
            assert_eq!(
                c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).unwrap(),
                0
            );
        }
        for _ in 0..2 {
            let store = SqliteStore::open(&old).unwrap();
            assert_eq!(derived_tables(&store), want);
            let (left, format): (i64, i64) = store
                .read(|c| {
                    Ok((
                        c.query_row(
                            "SELECT count(*) FROM main.sqlite_master WHERE name IN ('touches', 'identities', 'click_pages')",
                            [],
                            |r| r.get(0),
                        )?,
                        c.query_row("PRAGMA main.user_version", [], |r| r.get(0))?,
                    ))
                })
                .unwrap();
            assert_eq!((left, format), (0, derive::FORMAT));
            store.close().unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Without its derived file, a database that has events is refused rather than served with
    /// every click forgotten; a new database beside a used derived file is refused too.
    #[test]
    fn a_database_without_its_derived_file_is_refused() {
        let dir = fresh_dir("utt-lost");
        let db = dir.join("utt.db");
        let store = SqliteStore::open(&db).unwrap();
        store.append(&[&Batch::new("demo", 1, journey())]).unwrap();
        store.close().unwrap();
        drop(store);
        let derived = derived_path(&db);
        std::fs::rename(&derived, dir.join("kept")).unwrap();
        let e = SqliteStore::open(&db).err().expect("refused");
        assert!(e.0.contains("restore the two files together"), "{e}");
        // Nor is a new database served with the derived rows of one that is gone.
        std::fs::rename(dir.join("kept"), &derived).unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let e = SqliteStore::open(&db).err().expect("refused");
        assert!(e.0.contains("belongs to another database"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The derived file is made again from the stored events: the same rows as deriving them at
    /// ingestion left, whether the file was lost or damaged, and never while a collector has
    /// the database open.
    #[test]
    fn the_derived_file_is_rebuilt_from_the_events() {
        let dir = fresh_dir("utt-rebuild");
        let db = dir.join("utt.db");
        let store = SqliteStore::open(&db).unwrap();
        // The journey in one batch, then again as new events in batches of two, so that page
        // counts and sightings merge across batches and commits; a second site too.
        store.append(&[&Batch::new("demo", 1, journey())]).unwrap();
        let mut again = journey_again("aaaaaaaa");
        for e in &mut again {
            e.at += 1_000;
        }
        let elsewhere = journey_again("bbbbbbbb");
        for (pair, copy) in again.chunks(2).zip(elsewhere.chunks(2)) {
            store
                .append(&[
                    &Batch::new("demo", 2, pair.to_vec()),
                    &Batch::new("other", 2, copy.to_vec()),
                ])
                .unwrap();
        }
        let want = derived_tables(&store);
        assert!(want.iter().all(|t| !t.is_empty()), "{want:?}");
        let e = rebuild::rebuild(&db, 7).expect_err("refused while the store is open");
        assert!(e.0.contains("stop the collector"), "{e}");
        store.close().unwrap();
        drop(store);

        // Lost: the collector refuses to start and says how to rebuild; the rebuild restores it.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", derived_path(&db).display()));
        }
        let e = SqliteStore::open(&db).err().expect("refused");
        assert!(e.0.contains("--rebuild-derived"), "{e}");
        let r = rebuild::rebuild(&db, 7).unwrap();
        assert_eq!(r.events, journey().len() as u64 + 2 * again.len() as u64);
        assert_eq!(
            (r.touches, r.pages, r.identities),
            (want[0].len() as u64, want[1].len() as u64, want[2].len() as u64)
        );
        let store = SqliteStore::open(&db).unwrap();
        assert_eq!(derived_tables(&store), want);
        // And the store goes on from there: a new batch derives on top of the rebuilt rows.
        store.append(&[&Batch::new("demo", 3, Vec::new())]).unwrap();
        store.close().unwrap();
        drop(store);

        // Damaged: the rebuild replaces it and keeps the damaged file aside.
        {
            let c = Connection::open(derived_path(&db)).unwrap();
            c.execute("UPDATE click_pages SET pages = x'07'", []).unwrap();
            c.execute("DELETE FROM touches", []).unwrap();
        }
        let r = rebuild::rebuild(&db, 8).unwrap();
        let kept = r.kept.expect("the damaged file kept aside");
        assert!(
            kept.to_string_lossy().ends_with("utt.db-derived.replaced-8"),
            "{}",
            kept.display()
        );
        let aside: i64 = Connection::open(&kept)
            .unwrap()
            .query_row("SELECT count(*) FROM touches", [], |r| r.get(0))
            .unwrap();
        assert_eq!(aside, 0, "the file kept aside is the damaged one");
        let store = SqliteStore::open(&db).unwrap();
        assert_eq!(derived_tables(&store), want);
        store.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A backup taken while the store runs holds what was stored up to then and nothing after;
    /// restored, with its derived file rebuilt, it reads as the store did at that moment.
    #[test]
    fn a_backup_of_a_running_store_restores_with_a_rebuild() {
        let dir = fresh_dir("utt-backup");
        let db = dir.join("utt.db");
        let store = SqliteStore::open(&db).unwrap();
        store.append(&[&Batch::new("demo", 1, journey())]).unwrap();
        let (want, events) = (derived_tables(&store), store.counts().unwrap());
        let copy = dir.join("copy.db");
        assert!(rebuild::backup(&db, &copy).unwrap() > 0);
        let e = rebuild::backup(&db, &copy).expect_err("never overwrites");
        assert!(e.0.contains("never overwrites"), "{e}");
        // Stored after the backup: not in it.
        store
            .append(&[&Batch::new("demo", 2, journey_again("cccccccc"))])
            .unwrap();
        store.close().unwrap();
        drop(store);

        // Restored in another place: the collector asks for the rebuild, then reads as before.
        let other = fresh_dir("utt-restore");
        let restored = other.join("utt.db");
        std::fs::copy(&copy, &restored).unwrap();
        let e = SqliteStore::open(&restored)
            .err()
            .expect("refused without its derived file");
        assert!(e.0.contains("--rebuild-derived"), "{e}");
        rebuild::rebuild(&restored, 9).unwrap();
        let store = SqliteStore::open(&restored).unwrap();
        assert_eq!(store.counts().unwrap(), events);
        assert_eq!(derived_tables(&store), want);
        store.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }

    /// A deriver that cannot write (here: a stored page-count value it cannot merge with) says
    /// so in the store's status, retries, and catches up once the cause is gone; the events
    /// stay stored meanwhile.
    #[test]
    fn a_failing_deriver_is_reported_and_catches_up() {
        let dir = fresh_dir("utt-failing");
        let db = dir.join("utt.db");
        let store = SqliteStore::open(&db).unwrap();
        store.append(&[&Batch::new("demo", 1, journey())]).unwrap();
        assert!(!derived_tables(&store)[1].is_empty());
        assert_eq!(store.derive_status(), DeriveStatus::default());
        let derived = Connection::open(derived_path(&db)).unwrap();
        derived.busy_timeout(Duration::from_secs(5)).unwrap();
        derived.execute("UPDATE click_pages SET pages = x'07'", []).unwrap();
        // The same clicks again, in new events: their page counts must merge with the damage.
        let again = journey_again("aaaaaaaa");
        let n = again.len() as u64;
        assert!(store
            .append(&[&Batch::new("demo", 2, again)])
            .unwrap()
            .iter()
            .all(|s| *s == Status::Accepted));
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !store.derive_status().failing {
            assert!(std::time::Instant::now() < until, "the failure was never reported");
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = store.derive_status();
        assert!(status.failures >= 1 && status.lag == n, "{status:?}");
        let all = journey().len() as u64 + n;
        assert_eq!(store.counts().unwrap().events, all, "the events are stored meanwhile");
        // The cause removed (those counts are lost), the next retry derives what waited.
        derived.execute("DELETE FROM click_pages", []).unwrap();
        while store.derive_status().failing || store.derive_status().lag > 0 {
            assert!(
                std::time::Instant::now() < until,
                "never caught up: {:?}",
                store.derive_status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!derived_tables(&store)[1].is_empty());
        store.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Pending rows that were committed but not derived (the process died in between) are
    /// derived when the store opens again, once, and reads wait for them.
    #[test]
    fn pending_rows_left_behind_are_derived_at_the_next_open() {
        let dir = fresh_dir("utt-pending");
        let events = journey();
        let want = journey_tables(&dir.join("once.db"));
        // A store whose deriver never ran: the pending row written the way `append` writes it.
        let db = dir.join("utt.db");
        with_pending(&db, &[(events.len(), journey_rows(&events))]);
        let store = SqliteStore::open(&db).unwrap();
        assert_eq!(derived_tables(&store), want);
        assert_eq!(store.derive_status().lag, 0);
        store.close().unwrap();
        drop(store);
        // Derived once: opening again adds nothing, and the next commit deletes the row.
        let store = SqliteStore::open(&db).unwrap();
        assert_eq!(derived_tables(&store), want);
        store.append(&[&Batch::new("demo", 2, Vec::new())]).unwrap();
        let pending: i64 = store
            .read(|c| c.query_row("SELECT count(*) FROM pending", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(pending, 0);
        store.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A pending row that does not decode is kept aside with why, and the rows after it are
    /// derived: it does not keep every later click waiting.
    #[test]
    fn an_unreadable_pending_row_is_kept_aside_and_the_rest_derived() {
        let dir = fresh_dir("utt-unreadable");
        let events = journey();
        let want = journey_tables(&dir.join("once.db"));
        let db = dir.join("utt.db");
        // A site name cut short: its length says 7 bytes, 4 follow.
        let cut = b"\x07\0\0\0demo".to_vec();
        with_pending(&db, &[(1, cut), (events.len(), journey_rows(&events))]);
        let store = SqliteStore::open(&db).unwrap();
        assert_eq!(derived_tables(&store), want);
        assert_eq!(store.derive_status().lag, 0);
        let kept: (i64, Vec<u8>, String) = store
            .read(|c| {
                c.query_row("SELECT pending, rows, error FROM unreadable", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .unwrap();
        assert_eq!((kept.0, kept.1.as_slice()), (1, &b"\x07\0\0\0demo"[..]));
        assert!(kept.2.contains("cut short"), "{}", kept.2);
        store.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn url_paths() {
        let cases = [
            ("https://shop.example/product/42?irclickid=X#top", "/product/42"),
            ("https://shop.example", "/"),
            ("https://shop.example?x=1", "/"),
            ("https://shop.example?next=/account", "/"),
            ("http://localhost:8080/a/b/", "/a/b/"),
            ("/relative?q", "/relative"),
            ("", "/"),
        ];
        for (url, want) in cases {
            assert_eq!(url_path(url), want, "{url}");
        }
    }
}
