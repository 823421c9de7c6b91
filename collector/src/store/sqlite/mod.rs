//! The SQLite store: one file in WAL mode with `synchronous=FULL`, written by one connection
//! (the writer thread's) in one transaction per group, read by a small pool of connections.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rusqlite::Connection;
use utt::core::wire::Status;

use crate::store::{
    Adjusted, Adjustment, Attempted, Batch, ClickSeen, Counts, Delivery, DeriveStatus, OrdersExport, Plan,
    PostbackKind, PostbackQuery, PostbackRow, ServerOrder, Store, StoreError, StoredConversion, Touch, Unplanned,
};

mod derive;
mod orders;
mod postbacks;
mod read;
mod rebuild;
mod report;
mod schema;
mod write;

#[cfg(test)]
use read::*;
pub use schema::PAGE_SIZE;
use schema::*;
#[cfg(test)]
use write::*;

pub use derive::derived_path;
use derive::Progress;
pub use orders::export_orders;
pub use rebuild::{backup, export, rebuild as rebuild_derived, Rebuilt};

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

impl SqliteStore {
    /// Opens (creating if needed) the database file and starts its background checkpointer.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let derived_file = derived_path(path);
        let derived_file = derived_file
            .to_str()
            .ok_or_else(|| StoreError(format!("{} is not UTF-8", derived_file.display())))?
            .to_string();
        let mut writer = open(path).map_err(err)?;
        migrate(&mut writer)?;
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
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Without `close` (tests, errors), still let the checkpoint thread and the deriver end.
        self.stop.store(true, Ordering::Relaxed);
        self.progress.stop();
    }
}

pub use crate::store::url_path;

impl Store for SqliteStore {
    fn append(&self, batches: &[&Batch]) -> Result<Vec<Status>, StoreError> {
        self.append_group(batches)
    }

    fn conversions(
        &self,
        site: &str,
        since: u64,
        limit: usize,
        exclude: crate::traffic::Exclude,
    ) -> Result<Vec<StoredConversion>, StoreError> {
        self.conversions_since(site, since, limit, exclude)
    }

    fn touches(&self, site: &str, visitor: &str, from: u64, to: u64) -> Result<Vec<Touch>, StoreError> {
        self.touches_of(site, visitor, from, to)
    }

    fn click(&self, value: &str, site: Option<&str>) -> Result<Option<ClickSeen>, StoreError> {
        self.click_seen(value, site)
    }

    fn conversions_near_click(
        &self,
        value: &str,
        site: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredConversion>, StoreError> {
        self.near_click(value, site, limit)
    }

    fn event(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.event_json(id)
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        self.row_counts()
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
        self.probe_commit()
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

    fn confirm(&self, order: &ServerOrder) -> Result<Status, StoreError> {
        self.confirm_order(order)
    }

    fn server_order(&self, site: &str, order_id: &str) -> Result<Option<ServerOrder>, StoreError> {
        self.server_order_of(site, order_id)
    }

    fn server_only_orders(&self, site: &str, since: u64, limit: usize) -> Result<Vec<ServerOrder>, StoreError> {
        self.server_only(site, since, limit)
    }

    fn clicks(
        &self,
        site: &str,
        from: u64,
        to: u64,
        limit: usize,
        exclude: crate::traffic::Exclude,
    ) -> Result<Vec<Touch>, StoreError> {
        self.clicks_between(site, from, to, limit, exclude)
    }

    fn adjust(&self, adjustment: &Adjustment) -> Result<Adjusted, StoreError> {
        self.adjust_order(adjustment)
    }

    fn adjustments(&self, site: &str, order_id: &str) -> Result<Vec<Adjustment>, StoreError> {
        self.adjustments_of(site, order_id)
    }

    fn export_orders(&self) -> Result<OrdersExport, StoreError> {
        self.all_orders()
    }

    fn order_conversion(&self, site: &str, order_id: &str) -> Result<Option<StoredConversion>, StoreError> {
        self.order_conversion_of(site, order_id)
    }

    fn planned(
        &self,
        site: &str,
        kind: PostbackKind,
        order_id: &str,
        adjustment_id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        self.planned_of(site, kind, order_id, adjustment_id)
    }

    fn unplanned(&self, site: &str, since: u64, limit: usize) -> Result<Vec<Unplanned>, StoreError> {
        self.unplanned_of(site, since, limit)
    }

    fn plan_postback(&self, plan: &Plan, delivery: Option<&Delivery>) -> Result<bool, StoreError> {
        self.plan(plan, delivery)
    }

    fn claim_postbacks(&self, claim: &crate::store::Claim<'_>) -> Result<Vec<PostbackRow>, StoreError> {
        self.claim(claim)
    }

    fn attempted(&self, site: &str, id: &str, lease: u64, outcome: &Attempted) -> Result<bool, StoreError> {
        self.record_attempt((site, id, lease), outcome)
    }

    fn postbacks(&self, site: &str, query: &PostbackQuery) -> Result<Vec<PostbackRow>, StoreError> {
        self.postbacks_of(site, query)
    }

    fn postbacks_pending(&self) -> Result<u64, StoreError> {
        self.pending_postbacks()
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

#[cfg(test)]
mod tests;
