//! The derived tables, kept behind the durable log. A group commit stores the rows its events
//! derive (touches, page counts, identities) as one `pending` row of the main database, in the
//! same transaction as the events: that is all the acknowledgement waits for. The deriver
//! thread then merges whatever is pending, writes it sorted by key into a second database file
//! (`<db>-derived`) with its own WAL, records how far it got in that same transaction, and only
//! then lets the writer delete those pending rows. A crash at any point leaves either the
//! pending rows or the derived rows they made, never neither and never both counted.
//!
//! Reads of the derived tables first wait until every group committed before the read began is
//! derived, so the read API answers as if the rows were written with the events.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::schema::open;
use super::{err, int};
use crate::store::{put_text, put_u64, ByteReader, Derived, Merged, StoreError};

/// The derived tables, clustered on their keys (`WITHOUT ROWID`: an upsert writes one B-tree,
/// not a table and its key's index), and how far the pending log has been applied.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS touches (
    site TEXT NOT NULL,
    visitor TEXT NOT NULL,
    param TEXT NOT NULL,
    value TEXT NOT NULL,
    click_at INTEGER NOT NULL,
    network TEXT NOT NULL,
    path TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    landing TEXT NOT NULL DEFAULT '',
    traffic INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (site, visitor, param, value, click_at)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS touches_value ON touches (value);
-- The report's clicks of a site by time (store/sqlite/report.rs).
CREATE INDEX IF NOT EXISTS touches_at ON touches (site, click_at);
CREATE TABLE IF NOT EXISTS identities (
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    visitor TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (site, visitor, kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identities_value ON identities (site, kind, value, visitor);
CREATE TABLE IF NOT EXISTS click_pages (
    value TEXT NOT NULL,
    site TEXT NOT NULL,
    pages BLOB NOT NULL,
    PRIMARY KEY (value, site)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS progress (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    pending INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS unreadable (
    pending INTEGER PRIMARY KEY,
    rows BLOB,
    error TEXT NOT NULL
);
";

/// The columns of the derived tables copied as they are in the one-time move out of a database
/// that kept them in its main file (its `click_pages` had a row per path: see [`move_pages`]).
pub(super) const TABLES: [(&str, &str); 2] = [
    (
        "touches",
        "site, visitor, param, value, click_at, network, path, first_seen, last_seen",
    ),
    ("identities", "site, kind, value, visitor, at"),
];

/// The most paths a click keeps per site: the most recently viewed. The read API shows the
/// 100 most recent of a click in all, so what is dropped is never what it shows.
pub(super) const MAX_PATHS: usize = 100;

/// One path's page views in a `click_pages.pages` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PathViews<'a> {
    pub path: &'a str,
    pub views: u64,
    pub last_at: u64,
}

/// A click's page counts on one site as the `click_pages.pages` value: each path once, sorted
/// by path, as its text (`put_text`), views and latest view (`put_u64`). One row per click and
/// site rather than per path: a batch's page views of a click are one upsert, not one per page.
pub(super) fn encode_pages(pages: &[PathViews<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pages.iter().map(|p| p.path.len() + 20).sum());
    for p in pages {
        put_text(&mut out, p.path);
        put_u64(&mut out, p.views);
        put_u64(&mut out, p.last_at);
    }
    out
}

/// What [`encode_pages`] wrote.
pub(super) fn decode_pages(bytes: &[u8]) -> Result<Vec<PathViews<'_>>, StoreError> {
    let mut r = ByteReader(bytes);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        out.push(PathViews {
            path: r.text()?,
            views: r.n()?,
            last_at: r.n()?,
        });
    }
    Ok(out)
}

/// Two page-count values of one click and site merged, as the upsert stores them: views added
/// up, the latest view, and at most [`MAX_PATHS`] paths (the most recently viewed).
pub(super) fn merge_pages(old: &[u8], new: &[u8]) -> Result<Vec<u8>, StoreError> {
    let (a, b) = (decode_pages(old)?, decode_pages(new)?);
    let mut out: Vec<PathViews<'_>> = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.path.cmp(y.path),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(PathViews {
                    path: a[i].path,
                    views: a[i].views.saturating_add(b[j].views),
                    last_at: a[i].last_at.max(b[j].last_at),
                });
                i += 1;
                j += 1;
            }
        }
    }
    Ok(encode_pages(&most_recent(out)))
}

/// At most [`MAX_PATHS`] of a click's paths, sorted by path: the most recently viewed (at equal
/// times, the first paths).
fn most_recent(mut pages: Vec<PathViews<'_>>) -> Vec<PathViews<'_>> {
    if pages.len() > MAX_PATHS {
        pages.sort_by(|x, y| y.last_at.cmp(&x.last_at).then(x.path.cmp(y.path)));
        pages.truncate(MAX_PATHS);
        pages.sort_by(|x, y| x.path.cmp(y.path));
    }
    pages
}

/// The SQL function the page-count upsert merges with (`utt_merge_pages(old, new)`).
pub(super) fn register_merge(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "utt_merge_pages",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let old = ctx.get_raw(0).as_blob()?;
            let new = ctx.get_raw(1).as_blob()?;
            merge_pages(old, new).map_err(|e| rusqlite::Error::UserFunctionError(e.0.into()))
        },
    )
}

/// Gives a derived file made before partners were added its touches' `landing` column, and one
/// made before bot filtering their `traffic` column (empty, and human, for the rows it holds
/// until `--rebuild-derived` derives them again).
pub(super) fn add_landing(conn: &Connection) -> rusqlite::Result<()> {
    for (column, ddl) in [
        (
            "landing",
            "ALTER TABLE touches ADD COLUMN landing TEXT NOT NULL DEFAULT '';",
        ),
        (
            "traffic",
            "ALTER TABLE touches ADD COLUMN traffic INTEGER NOT NULL DEFAULT 0;",
        ),
    ] {
        let has: i64 = conn.query_row(
            "SELECT count(*) FROM pragma_table_info('touches') WHERE name = ?1",
            [column],
            |r| r.get(0),
        )?;
        if has == 0 {
            conn.execute_batch(ddl)?;
        }
    }
    Ok(())
}

/// Moves an older main file's `click_pages` (a row per click, site and path) into this file's
/// (a row per click and site), keeping each click's [`MAX_PATHS`] most recent paths per site.
fn move_pages(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let mut st =
        tx.prepare("SELECT value, site, path, views, last_at FROM old.click_pages ORDER BY value, site, path")?;
    let mut ins = tx.prepare("INSERT INTO main.click_pages (value, site, pages) VALUES (?1, ?2, ?3)")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)? as u64,
            r.get::<_, i64>(4)? as u64,
        ))
    })?;
    let rows: Vec<(String, String, String, u64, u64)> = rows.collect::<rusqlite::Result<_>>()?;
    for group in rows.chunk_by(|a, b| (&a.0, &a.1) == (&b.0, &b.1)) {
        let pages = group
            .iter()
            .map(|(_, _, path, views, last_at)| PathViews {
                path,
                views: *views,
                last_at: *last_at,
            })
            .collect();
        ins.execute(params![group[0].0, group[0].1, encode_pages(&most_recent(pages))])?;
    }
    Ok(())
}

/// The main database's format: 0 kept the derived tables in the main file (until 2026-11-26), 1 keeps
/// them in `<db>-derived` behind the pending log.
pub(super) const FORMAT: i64 = 1;

/// How many acknowledged events may wait for the deriver before the writer waits for it: the
/// read API's rows are never further behind than this, and a deriver that cannot keep up slows
/// the acknowledgements instead of falling behind without bound.
pub const MAX_LAG: u64 = 65_536;

/// The longest a commit waits for the deriver to get under [`MAX_LAG`]. A deriver that is
/// failing (a full disk, say) must not stop ingestion: its pending rows are durable and wait.
const LAG_WAIT: Duration = Duration::from_secs(1);

/// The longest a read waits for the derived rows of what was acknowledged before it.
const READ_WAIT: Duration = Duration::from_secs(5);

/// The derived database's file beside the main one.
pub fn derived_path(db: &Path) -> PathBuf {
    super::suffixed(db, "-derived")
}

/// How far the pending log is written and derived, shared by the writer, the deriver and the
/// readers.
#[derive(Default)]
pub(super) struct Marks {
    /// The last pending row committed.
    pub committed: u64,
    /// The last pending row derived (and durable in the derived database).
    pub applied: u64,
    /// Acknowledged events whose rows are not derived yet.
    pub lag: u64,
    /// Set at close: the deriver finishes what is pending and stops.
    pub stop: bool,
    /// Reads waiting for the deriver: it writes at once instead of gathering more.
    pub readers: u32,
    /// Failed attempts to derive, since the store opened.
    pub failures: u64,
    /// The latest attempt failed (it is retried every second).
    pub failing: bool,
}

#[derive(Default)]
pub(super) struct Progress {
    marks: Mutex<Marks>,
    moved: Condvar,
}

impl Progress {
    pub fn lock(&self) -> MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer committed pending row `id` with `events` events' rows.
    pub fn committed(&self, id: u64, events: u64) {
        let mut m = self.lock();
        m.committed = id;
        m.lag += events;
        drop(m);
        self.moved.notify_all();
    }

    /// Waits (at most `limit`) until `done` holds; false if it still does not.
    fn wait_until(&self, limit: Duration, done: impl Fn(&Marks) -> bool) -> bool {
        let until = Instant::now() + limit;
        let mut m = self.lock();
        while !done(&m) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            m = self.moved.wait_timeout(m, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }

    /// Before a read of the derived tables: waits until everything committed so far is derived.
    pub fn wait_for_reads(&self) {
        let mut m = self.lock();
        let target = m.committed;
        if m.applied >= target {
            return;
        }
        m.readers += 1;
        drop(m);
        self.moved.notify_all();
        let done = self.wait_until(READ_WAIT, |m| m.applied >= target);
        self.lock().readers -= 1;
        if !done {
            tracing::warn!(
                target,
                "reading derived rows that are not up to date: the deriver is behind"
            );
        }
    }

    /// Before a commit: waits while too many acknowledged events wait for the deriver.
    pub fn wait_for_room(&self) {
        if !self.wait_until(LAG_WAIT, |m| m.lag <= MAX_LAG) {
            tracing::warn!("the deriver is behind by more than {MAX_LAG} events; storing anyway");
        }
    }

    /// Asks the deriver to finish and stop.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.moved.notify_all();
    }
}

/// Opens the derived database beside `main` (the writer's connection to the main file) and
/// brings it to the current format: the derived tables move out of a main file that had them,
/// once. Returns the connection the deriver writes with and how far it has derived.
pub(super) fn open_derived(main: &Connection, db: &Path) -> Result<(Connection, u64), StoreError> {
    let path = derived_path(db);
    let conn = open(&path).map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    add_landing(&conn).map_err(err)?;
    register_merge(&conn).map_err(err)?;
    let format: i64 = main.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    let has_old = main
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'touches'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(err)?
        > 0;
    let applied: Option<i64> = conn
        .query_row("SELECT pending FROM progress", [], |r| r.get(0))
        .optional()
        .map_err(err)?;
    let applied = match applied {
        // A new main file (no derived tables of its own, never opened by this version) beside
        // a derived file that has been written: it belongs to a database that is gone, and
        // serving its rows would show clicks this database never saw.
        Some(_) if format < FORMAT && !has_old => {
            return Err(StoreError(format!(
                "{} belongs to another database than {}: remove it too for a fresh start, or restore the two files together",
                path.display(),
                db.display()
            )));
        }
        Some(n) => n,
        None => {
            let events: i64 = main
                .query_row("SELECT count(*) FROM (SELECT 1 FROM events LIMIT 1)", [], |r| r.get(0))
                .map_err(err)?;
            if format >= FORMAT && events > 0 {
                // The main file's events were derived into a file that is not here: starting
                // empty would silently forget every click and identity seen so far.
                return Err(StoreError(format!(
                    "{} is missing or empty, but {} has events: restore the two files together, \
                     or make it again from the events with `utt-collector --db {} --rebuild-derived`",
                    path.display(),
                    db.display(),
                    db.display()
                )));
            }
            let db_text = db
                .to_str()
                .ok_or_else(|| StoreError(format!("{} is not UTF-8", db.display())))?;
            // ATTACH cannot run inside a transaction.
            if has_old {
                conn.execute("ATTACH DATABASE ?1 AS old", [db_text]).map_err(err)?;
            }
            let tx = conn.unchecked_transaction().map_err(err)?;
            if has_old {
                for (table, columns) in TABLES {
                    tx.execute_batch(&format!(
                        "INSERT INTO main.{table} ({columns}) SELECT {columns} FROM old.{table};"
                    ))
                    .map_err(err)?;
                }
                move_pages(&tx).map_err(err)?;
            }
            tx.execute("INSERT INTO progress (one, pending) VALUES (1, 0)", [])
                .map_err(err)?;
            tx.commit().map_err(err)?;
            if has_old {
                conn.execute_batch("DETACH DATABASE old;").map_err(err)?;
            }
            0
        }
    };
    // The rows are in the derived file now (copied above, or by an earlier run that stopped
    // before this): the main file's copies go.
    if has_old {
        main.execute_batch("BEGIN; DROP TABLE touches; DROP TABLE identities; DROP TABLE click_pages; COMMIT;")
            .map_err(err)?;
    }
    if format < FORMAT {
        main.execute_batch(&format!("PRAGMA user_version = {FORMAT};"))
            .map_err(err)?;
    }
    Ok((conn, u64::try_from(applied).unwrap_or(0)))
}

/// How long the deriver gathers pending rows before it writes them, unless a read waits for
/// them, the lag passes half of [`MAX_LAG`], or the store closes. One transaction then writes
/// many groups' rows: a click's page views over a visit merge into one upsert, and a page of a
/// table that several rows change is written once.
const GATHER: Duration = Duration::from_millis(200);

/// The deriver: applies pending rows as they are committed, until stopped with nothing left.
pub(super) fn run(src: Connection, mut dst: Connection, progress: Arc<Progress>) {
    let mut last = Instant::now();
    loop {
        let after = {
            let mut m = progress.lock();
            loop {
                let urgent = m.stop || m.readers > 0 || m.lag > MAX_LAG / 2;
                let left = GATHER.saturating_sub(last.elapsed());
                if m.applied < m.committed && (urgent || left.is_zero()) {
                    break;
                }
                if m.applied >= m.committed && m.stop {
                    break;
                }
                let wait = if m.applied < m.committed {
                    left
                } else {
                    Duration::from_millis(500)
                };
                m = progress
                    .moved
                    .wait_timeout(m, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if m.applied >= m.committed {
                drop(m);
                if let Err(e) = dst.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpointing the derived file");
                }
                return;
            }
            m.applied
        };
        last = Instant::now();
        match apply(&src, &mut dst, after) {
            Ok(Some((upto, events))) => {
                let mut m = progress.lock();
                m.failing = false;
                m.applied = upto;
                m.lag = m.lag.saturating_sub(events);
                drop(m);
                progress.moved.notify_all();
            }
            // Nothing past `after`, though the writer marks only rows it committed: never
            // expected, but a missing row must not keep reads waiting.
            Ok(None) => {
                let mut m = progress.lock();
                m.failing = false;
                m.applied = m.applied.max(m.committed);
                drop(m);
                progress.moved.notify_all();
            }
            Err(e) => {
                tracing::error!(error = %e, "deriving pending rows failed; retrying");
                let mut m = progress.lock();
                m.failures += 1;
                m.failing = true;
                if m.stop {
                    return;
                }
                drop(m);
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// How many pending rows one derived transaction takes at most (each a group commit of up to
/// `writer::MAX_GROUP` events).
const TAKE: i64 = 256;

/// Applies the pending rows after `after` (up to [`TAKE`]) in one transaction of the derived
/// database; returns the last one applied and their events, or `None` if there were none.
fn apply(src: &Connection, dst: &mut Connection, after: u64) -> Result<Option<(u64, u64)>, StoreError> {
    let mut st = src
        .prepare_cached("SELECT id, events, rows FROM pending WHERE id > ?1 ORDER BY id LIMIT ?2")
        .map_err(err)?;
    let mut rows = st.query(params![int(after), TAKE]).map_err(err)?;
    let (mut last, mut events, mut parts) = (0u64, 0u64, Vec::new());
    // A pending row that does not decode would stop every row after it forever if it were
    // retried: it is kept aside, with why, and the rest goes on.
    let mut unreadable: Vec<(u64, Option<Vec<u8>>, String)> = Vec::new();
    while let Some(r) = rows.next().map_err(err)? {
        last = r.get::<_, i64>(0).map_err(err)? as u64;
        events += r.get::<_, i64>(1).map_err(err)? as u64;
        let blob = r.get_ref(2).map_err(err)?.as_blob().ok();
        let decoded = match blob {
            Some(bytes) => Derived::decode(bytes),
            None => Err(StoreError("pending rows: not a blob".into())),
        };
        match decoded {
            Ok(p) => parts.extend(p),
            Err(e) => {
                tracing::error!(pending = last, error = %e, "a pending row does not decode; kept in the derived file's `unreadable` table");
                unreadable.push((last, blob.map(<[u8]>::to_vec), e.0));
            }
        }
    }
    drop(rows);
    if last == 0 {
        return Ok(None);
    }
    let merged = Merged::of(parts);
    let tx = dst
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    write(&tx, &merged).map_err(err)?;
    for (id, bytes, error) in &unreadable {
        tx.execute(
            "INSERT OR REPLACE INTO unreadable (pending, rows, error) VALUES (?1, ?2, ?3)",
            params![int(*id), bytes, error],
        )
        .map_err(err)?;
    }
    tx.execute("UPDATE progress SET pending = ?1", [int(last)])
        .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(Some((last, events)))
}

/// Writes merged rows: touches and page counts merge with the stored ones (first/last time,
/// view counts), identities keep their first sighting.
pub(super) fn write(tx: &rusqlite::Transaction<'_>, m: &Merged) -> rusqlite::Result<()> {
    let mut up_touch = tx.prepare_cached(
        "INSERT INTO touches (site, visitor, param, value, click_at, network, path, first_seen, last_seen, landing, traffic) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (site, visitor, param, value, click_at) DO UPDATE SET \
         first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen), \
         landing = CASE WHEN landing = '' THEN excluded.landing ELSE landing END, \
         traffic = min(traffic, excluded.traffic)",
    )?;
    for (site, t) in &m.touches {
        up_touch.execute(params![
            site,
            t.visitor,
            t.param,
            t.value,
            int(t.click_at),
            t.network,
            t.path,
            int(t.first),
            int(t.last),
            t.landing,
            t.traffic.code()
        ])?;
    }
    let mut up_page = tx.prepare_cached(
        "INSERT INTO click_pages (value, site, pages) VALUES (?1, ?2, ?3) \
         ON CONFLICT (value, site) DO UPDATE SET pages = utt_merge_pages(pages, excluded.pages)",
    )?;
    // The merged rows are sorted by click, site and path: one upsert per click and site.
    for run in m.pages.chunk_by(|(a, x), (b, y)| (&x.value, a) == (&y.value, b)) {
        let pages = run
            .iter()
            .map(|(_, p)| PathViews {
                path: &p.path,
                views: p.views,
                last_at: p.last_at,
            })
            .collect();
        let (site, first) = &run[0];
        up_page.execute(params![first.value, site, encode_pages(&most_recent(pages))])?;
    }
    let mut ins_ident = tx.prepare_cached(
        "INSERT INTO identities (site, kind, value, visitor, at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT DO NOTHING",
    )?;
    for (site, i) in &m.identities {
        ins_ident.execute(params![site, i.kind, i.value, i.visitor, int(i.at)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn views(path: &str, views: u64, last_at: u64) -> PathViews<'_> {
        PathViews { path, views, last_at }
    }

    /// Page counts merge as the old per-path upsert did (views added, the latest view kept),
    /// stay sorted by path, and keep the most recently viewed paths past [`MAX_PATHS`].
    #[test]
    fn page_counts_merge_per_path() {
        let old = encode_pages(&[views("/a", 2, 10), views("/c", 1, 30)]);
        let new = encode_pages(&[views("/b", 1, 20), views("/c", 3, 25)]);
        let merged = merge_pages(&old, &new).unwrap();
        assert_eq!(
            decode_pages(&merged).unwrap(),
            [views("/a", 2, 10), views("/b", 1, 20), views("/c", 4, 30)]
        );
        assert_eq!(merge_pages(&merged, &[]).unwrap(), merged);
        assert_eq!(merge_pages(&[], &merged).unwrap(), merged);
        // Past the bound the paths viewed longest ago go: here the first 20 of 120.
        let names: Vec<String> = (0..120).map(|i| format!("/p{i:03}")).collect();
        let many: Vec<PathViews<'_>> = names.iter().enumerate().map(|(i, p)| views(p, 1, i as u64)).collect();
        let kept = merge_pages(&encode_pages(&many[..60]), &encode_pages(&many[60..])).unwrap();
        assert_eq!(decode_pages(&kept).unwrap(), many[20..]);
        // A cut value is an error, not a wrong count.
        let first_entry = 4 + "/a".len() + 8 + 8;
        for cut in 1..old.len() {
            assert_eq!(decode_pages(&old[..cut]).is_ok(), cut == first_entry, "cut at {cut}");
        }
    }

    /// A commit waits while the deriver is more than [`MAX_LAG`] events behind, until it is not.
    #[test]
    fn commits_wait_for_a_deriver_far_behind() {
        let p = Arc::new(Progress::default());
        p.committed(1, MAX_LAG);
        p.wait_for_room(); // at the bound: no wait
        p.committed(2, 1);
        let lowered = Arc::new(AtomicBool::new(false));
        let helper = {
            let (p, lowered) = (p.clone(), lowered.clone());
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                lowered.store(true, Ordering::SeqCst);
                let mut m = p.lock();
                m.applied = 2;
                m.lag = 0;
                drop(m);
                p.moved.notify_all();
            })
        };
        p.wait_for_room();
        assert!(
            lowered.load(Ordering::SeqCst),
            "the commit did not wait for the deriver"
        );
        helper.join().unwrap();
    }

    /// A read waits for what was committed before it, and tells the deriver so (it writes at
    /// once instead of gathering more); a read with nothing pending does not wait.
    #[test]
    fn reads_wait_for_the_deriver_and_hurry_it() {
        let p = Arc::new(Progress::default());
        p.wait_for_reads();
        p.committed(3, 10);
        let reader = {
            let p = p.clone();
            thread::spawn(move || p.wait_for_reads())
        };
        let until = Instant::now() + Duration::from_secs(4);
        while p.lock().readers == 0 {
            assert!(Instant::now() < until, "the read did not wait");
            thread::sleep(Duration::from_millis(1));
        }
        // Later commits are not what the read waits for.
        p.committed(4, 10);
        let mut m = p.lock();
        m.applied = 3;
        drop(m);
        p.moved.notify_all();
        reader.join().unwrap();
        assert_eq!(p.lock().readers, 0);
    }
}
