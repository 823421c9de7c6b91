//! Rebuilding the derived file from the events. Every accepted event's wire JSON is in the main
//! file's body log, so the derived tables (touches, page counts, identities) can be made again
//! from it when their file is lost or damaged: the same rows as deriving them at ingestion
//! would have left, since their merges (earliest and latest sighting, views added up, the
//! first identity) do not depend on how the events were grouped. The one exception is a click
//! with more than `MAX_PATHS` paths on a site: which paths it keeps can differ.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use utt::core::wire::Event;

use super::derive::{self, derived_path, FORMAT};
use super::err;
use super::read::split_clicks_ref;
use super::schema::{open, suffixed, wal_path};
use crate::store::{Chunks, Derived, Merged, StoreError};
use crate::traffic::Traffic;

/// Events derived per transaction of the new file (decoded, they take about 2 KB each).
const CHUNK: usize = 10_000;

/// What a rebuild did.
#[derive(Debug, PartialEq, Eq)]
pub struct Rebuilt {
    /// Events read back and derived.
    pub events: u64,
    /// Touch rows in the new file.
    pub touches: u64,
    /// Page-count rows (one per click and site) in the new file.
    pub pages: u64,
    /// Identity rows in the new file.
    pub identities: u64,
    /// Where the derived file that was there went, if there was one.
    pub kept: Option<PathBuf>,
}

/// Makes `<db>-derived` again from the events stored in `db`. The collector must not be running
/// on it (refused if it is). A derived file already there is moved aside (`<db>-derived.replaced-
/// <unix seconds>`, with its WAL), never deleted.
pub fn rebuild(db: &Path, now_secs: u64) -> Result<Rebuilt, StoreError> {
    if !db.is_file() {
        return Err(StoreError(format!("{} does not exist", db.display())));
    }
    let main = open(db).map_err(err)?;
    // Holding the main file exclusively until the new derived file is in place keeps a
    // collector from starting on it halfway, and fails at once if one is running.
    main.execute_batch("PRAGMA locking_mode=EXCLUSIVE;").map_err(err)?;
    main.busy_timeout(std::time::Duration::ZERO).map_err(err)?;
    main.execute_batch("BEGIN EXCLUSIVE; COMMIT;").map_err(|e| {
        StoreError(format!(
            "{} is in use ({e}): stop the collector before rebuilding its derived file",
            db.display()
        ))
    })?;
    let format: i64 = main.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
    if format < FORMAT {
        return Err(StoreError(format!(
            "{} is in an older format: start the collector on it once first (it moves its derived tables then)",
            db.display()
        )));
    }
    let target = derived_path(db);
    let fresh = suffixed(&target, ".rebuilding");
    for p in [fresh.clone(), wal_path(&fresh), shm_path(&fresh)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError(format!("removing {}: {e}", p.display()))),
        }
    }
    let mut dst = open(&fresh).map_err(err)?;
    dst.execute_batch(derive::SCHEMA).map_err(err)?;
    derive::register_merge(&dst).map_err(err)?;
    let mut out = Rebuilt {
        events: 0,
        touches: 0,
        pages: 0,
        identities: 0,
        kept: None,
    };
    derive_all(&main, &mut dst, &mut out)?;
    // Every pending row's events are in the body log and derived above: they are done. The
    // progress mark keeps the pending IDs increasing.
    let last_pending: i64 = main
        .query_row("SELECT coalesce(max(id), 0) FROM pending", [], |r| r.get(0))
        .map_err(err)?;
    // The old file's mark, if it can still be read, for the same reason.
    let previous: i64 = if target.is_file() {
        Connection::open(&target)
            .and_then(|c| c.query_row("SELECT pending FROM progress", [], |r| r.get(0)))
            .unwrap_or(0)
    } else {
        0
    };
    dst.execute(
        "INSERT INTO progress (one, pending) VALUES (1, ?1)",
        [last_pending.max(previous)],
    )
    .map_err(err)?;
    for (table, n) in [
        ("touches", &mut out.touches),
        ("click_pages", &mut out.pages),
        ("identities", &mut out.identities),
    ] {
        *n = dst
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))
            .map_err(err)? as u64;
    }
    dst.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(err)?;
    dst.close().map_err(|(_, e)| err(e))?;
    // The old file (and its WAL, which holds part of it) goes aside, the new one in its place.
    if target.exists() {
        let kept = suffixed(&target, &format!(".replaced-{now_secs}"));
        for (from, to) in [
            (wal_path(&target), wal_path(&kept)),
            (shm_path(&target), shm_path(&kept)),
            (target.clone(), kept.clone()),
        ] {
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError(format!("moving {} aside: {e}", from.display()))),
            }
        }
        out.kept = Some(kept);
    }
    std::fs::rename(&fresh, &target).map_err(|e| StoreError(format!("moving {} into place: {e}", fresh.display())))?;
    // The rename is durable once the folder is.
    sync_folder_of(&target)?;
    main.execute("DELETE FROM pending", []).map_err(err)?;
    Ok(out)
}

/// Copies the main file of `db` to `to`, consistent as of one moment, while a collector may be
/// running on it (`VACUUM INTO`, a read transaction: the writer goes on). The derived file is
/// not copied: it is made again from the copy with [`rebuild`], so the two can never come from
/// different moments. Returns the copy's size in bytes.
pub fn backup(db: &Path, to: &Path) -> Result<u64, StoreError> {
    if !db.is_file() {
        return Err(StoreError(format!("{} does not exist", db.display())));
    }
    if to.exists() {
        return Err(StoreError(format!(
            "{} exists: a backup never overwrites a file",
            to.display()
        )));
    }
    let target = to
        .to_str()
        .ok_or_else(|| StoreError(format!("{} is not UTF-8", to.display())))?;
    let conn = open(db).map_err(err)?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(err)?;
    drop(conn);
    let file = std::fs::File::open(to).and_then(|f| f.sync_all().and(f.metadata()));
    let size = file
        .map_err(|e| StoreError(format!("syncing {}: {e}", to.display())))?
        .len();
    sync_folder_of(to)?;
    Ok(size)
}

/// Makes a new name in a folder durable (the folder's entry, not the file's bytes).
fn sync_folder_of(file: &Path) -> Result<(), StoreError> {
    match file.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError(format!("syncing {}: {e}", dir.display()))),
        None => Ok(()),
    }
}

fn shm_path(db: &Path) -> PathBuf {
    suffixed(db, "-shm")
}

/// Reads every stored event back from the body log, in the order it was stored, and writes
/// what they derive into `dst`, [`CHUNK`] events per transaction.
fn derive_all(main: &Connection, dst: &mut Connection, out: &mut Rebuilt) -> Result<(), StoreError> {
    let mut chunks = Chunks::new(CHUNK);
    each_event(main, |site, _, traffic, event| {
        out.events += 1;
        match chunks.push(site, traffic, event) {
            Some(parts) => write_chunk(dst, parts),
            None => Ok(()),
        }
    })?;
    write_chunk(dst, chunks.finish())
}

/// Calls `each` with every stored event of `main` (its site, when it was received, its traffic
/// class, the event), read back from the body log in the order the events were stored.
fn each_event(
    main: &Connection,
    mut each: impl FnMut(&str, u64, Traffic, Event) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut st = main
        .prepare("SELECT site, body_id, body_at, body_len, received, traffic FROM events ORDER BY body_id, body_at")
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    let mut blob: (i64, Vec<u8>) = (0, Vec::new());
    while let Some(r) = rows.next().map_err(err)? {
        let (s, body_id, at, len, received): (String, i64, i64, i64, i64) = (
            r.get(0).map_err(err)?,
            r.get(1).map_err(err)?,
            r.get(2).map_err(err)?,
            r.get(3).map_err(err)?,
            r.get(4).map_err(err)?,
        );
        if blob.0 != body_id {
            let bytes: Vec<u8> = main
                .query_row("SELECT json FROM bodies WHERE id = ?1", [body_id], |r| r.get(0))
                .map_err(|e| StoreError(format!("body log {body_id}: {e}")))?;
            blob = (body_id, bytes);
        }
        let text = entry(&blob.1, at, len).ok_or_else(|| {
            StoreError(format!(
                "body log {body_id}: the entry at {at} ({len} bytes) is not readable"
            ))
        })?;
        let event = read(&text).map_err(|e| StoreError(format!("body log {body_id} at {at}: {e}")))?;
        let traffic = Traffic::from_code(r.get(5).map_err(err)?);
        each(&s, received.max(0) as u64, traffic, event)?;
    }
    Ok(())
}

/// Reads every event stored in the SQLite database `db` (its site, when it was received, its
/// traffic class, the event), in the order they were stored, for a move to another store. It reads one consistent
/// snapshot and may run while a collector writes to the database: events stored after it
/// began are not in it.
pub fn export(
    db: &Path,
    each: impl FnMut(&str, u64, Traffic, Event) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if !db.is_file() {
        return Err(StoreError(format!("{} does not exist", db.display())));
    }
    let main = open(db).map_err(err)?;
    main.execute_batch("PRAGMA query_only=1; BEGIN;").map_err(err)?;
    let out = each_event(&main, each);
    main.execute_batch("COMMIT;").map_err(err)?;
    out
}

fn write_chunk(dst: &mut Connection, parts: Vec<(String, Derived)>) -> Result<(), StoreError> {
    if parts.is_empty() {
        return Ok(());
    }
    let tx = dst.transaction().map_err(err)?;
    derive::write(&tx, &Merged::of(parts)).map_err(err)?;
    tx.commit().map_err(err)
}

/// An event's JSON from its body log: its entry, with a click list kept once per batch put
/// back in its place.
fn entry(blob: &[u8], at: i64, len: i64) -> Option<String> {
    let (at, len) = (usize::try_from(at).ok()?, usize::try_from(len).ok()?);
    let e = blob.get(at..at.checked_add(len)?)?;
    let bytes = match split_clicks_ref(e) {
        None => e.to_vec(),
        Some((before, c_at, c_len, after)) => {
            let (c_at, c_len) = (usize::try_from(c_at).ok()?, usize::try_from(c_len).ok()?);
            let clicks = blob.get(c_at..c_at.checked_add(c_len)?)?;
            [before, clicks, after].concat()
        }
    };
    String::from_utf8(bytes).ok()
}

fn read(text: &str) -> Result<Event, String> {
    utt::core::wire::read_event(text).map_err(|e| format!("{}: {}", e.field, e.reason))
}
