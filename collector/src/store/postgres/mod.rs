//! The PostgreSQL store: one database shared by any number of collectors. Each collector's
//! single writer commits a group of batches per transaction (multi-row inserts of arrays,
//! `ON CONFLICT DO NOTHING` on the event ID and on the site's order ID, synchronous commit on),
//! and writes the rows they derive (touches, page counts, identities) in the same transaction,
//! by the same rules as the SQLite store. Nothing a request needs lives in one collector's
//! memory: any collector answers any request.
//!
//! The driver is asynchronous (`tokio-postgres`, pooled by `deadpool-postgres`); the [`Store`]
//! trait is not, so the store runs its own small runtime and blocks on it.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use utt::core::wire::Status;

use crate::store::{
    Adjusted, Adjustment, Attempted, Batch, ClickSeen, Counts, Delivery, OrdersExport, Plan, PostbackKind,
    PostbackQuery, PostbackRow, ServerOrder, Store, StoreError, StoredConversion, Touch, Unplanned,
};

mod derive;
mod orders;
mod postbacks;
mod read;
mod report;
pub mod schema;
mod write;

pub use derive::Rebuilt;

/// A pooled connection.
pub type Client = deadpool_postgres::Object;

/// The most connections one collector opens: its writer's, and its readers'.
pub const POOL_SIZE: usize = 16;

/// How many groups one collector commits at the same time, each in its own transaction on its
/// own connection: while one waits for its commit (the WAL flush), the next is gathered and
/// sent, as a second collector's would be.
pub const WRITERS: usize = 4;

/// How long a connection attempt may take before the store is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// True for a `--db` value that names a PostgreSQL database rather than a SQLite file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// The URL without its password, for logs and messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..auth_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// A driver error as a store error: the database unreachable (connection refused or lost, the
/// server shutting down or starting) is [`StoreError::unavailable`], answered 503 so the tag
/// retries; anything else is a failure of ours.
pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    use std::error::Error as _;
    let state = e.code().map(|c| c.code().to_string());
    let down = e.is_closed()
        || e.source().is_some_and(|s| s.is::<std::io::Error>())
        || state
            .as_deref()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300" || c == "25006");
    let text = match e.as_db_error() {
        Some(db) => format!("postgres: {} ({})", db.message(), db.code().code()),
        None => format!("postgres: {e}"),
    };
    if down {
        StoreError::unavailable(text)
    } else {
        StoreError(text)
    }
}

/// A pool error (no connection could be had) as a store error: the database is unreachable.
fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => {
            let e = pg(e);
            if e.is_unavailable() {
                e
            } else {
                StoreError::unavailable(e.0)
            }
        }
        e => StoreError::unavailable(format!("postgres: no connection: {e}")),
    }
}

/// Whether a transaction failed only because it met another one (deadlock, serialisation):
/// then it is tried again.
fn is_conflict(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| matches!(c.code(), "40P01" | "40001"))
}

/// The PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The URL without its password.
    shown: String,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/dbname`),
    /// applies the schema migrations it lacks (once, under an advisory lock, whichever
    /// collectors start at the same time) and checks that commits are synchronous.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let shown = redact(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError(format!("{shown}: not a PostgreSQL URL: {e}")))?;
        // An acknowledgement promises the events are on disk: every session commits
        // synchronously, whatever the server's or the role's default says.
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c synchronous_commit=on"),
            _ => "-c synchronous_commit=on".to_string(),
        };
        config.options(&options);
        config.application_name("utt-collector");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("utt-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("the PostgreSQL store's runtime: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError(format!("{shown}: {e}")))?;
        let store = PostgresStore {
            runtime: Some(runtime),
            pool,
            shown,
        };
        store
            .block(async {
                let mut client = store.client().await?;
                schema::migrate(&mut client).await?;
                let row = client
                    .query_one(
                        "SELECT current_setting('synchronous_commit'), current_setting('fsync')",
                        &[],
                    )
                    .await
                    .map_err(pg)?;
                let (sync, fsync): (String, String) = (row.get(0), row.get(1));
                if sync != "on" {
                    return Err(StoreError(format!(
                        "synchronous_commit is {sync} on this connection: acknowledged events could be lost"
                    )));
                }
                if fsync != "on" {
                    tracing::warn!(
                        "the PostgreSQL server runs with fsync=off: a power loss can lose acknowledged events"
                    );
                }
                Ok(())
            })
            .map_err(|e| StoreError(format!("{}: {e}", store.shown)))?;
        Ok(store)
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// A connection from the pool.
    async fn client(&self) -> Result<Client, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }

    /// Runs a future on the store's runtime and waits for it. On a thread that is itself inside
    /// an asynchronous runtime (a test's, a handler calling by mistake), it waits on a thread of
    /// its own rather than nesting runtimes.
    fn block<T: Send>(&self, fut: impl Future<Output = T> + Send) -> T {
        let rt = self
            .runtime
            .as_ref()
            .expect("unreachable: the runtime lives until drop");
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(fut);
        }
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(fut))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Makes the derived tables (touches, page counts, identities) again from the stored
    /// events. Collectors may keep running: their commits wait until it is done.
    pub fn rebuild_derived(&self) -> Result<Rebuilt, StoreError> {
        self.block(async {
            let mut client = self.client().await?;
            derive::rebuild(&mut client).await
        })
    }

    /// A setting as the store's sessions see it (`SHOW name`).
    pub fn setting(&self, name: &str) -> Result<String, StoreError> {
        self.block(async {
            let client = self.client().await?;
            let row = client
                .query_one("SELECT current_setting($1)", &[&name])
                .await
                .map_err(pg)?;
            Ok(row.get(0))
        })
    }

    /// The applied schema versions, oldest first.
    pub fn schema_versions(&self) -> Result<Vec<i32>, StoreError> {
        self.block(async { schema::applied(&self.client().await?).await })
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.pool.close();
        // Dropping a runtime blocks; inside another runtime (a test's) it must not.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Store for PostgresStore {
    fn append(&self, batches: &[&Batch]) -> Result<Vec<Status>, StoreError> {
        self.block(async {
            let mut client = self.client().await?;
            write::append(&mut client, batches).await
        })
    }

    fn conversions(
        &self,
        site: &str,
        since: u64,
        limit: usize,
        exclude: crate::traffic::Exclude,
    ) -> Result<Vec<StoredConversion>, StoreError> {
        self.block(async { read::conversions(&self.client().await?, site, since, limit, exclude).await })
    }

    fn touches(&self, site: &str, visitor: &str, from: u64, to: u64) -> Result<Vec<Touch>, StoreError> {
        self.block(async { read::touches(&self.client().await?, site, visitor, from, to).await })
    }

    fn click(&self, value: &str, site: Option<&str>) -> Result<Option<ClickSeen>, StoreError> {
        self.block(async { read::click(&self.client().await?, value, site).await })
    }

    fn conversions_near_click(
        &self,
        value: &str,
        site: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredConversion>, StoreError> {
        self.block(async { read::near_click(&self.client().await?, value, site, limit).await })
    }

    fn event(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.block(async { read::event(&self.client().await?, id).await })
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        self.block(async { read::counts(&self.client().await?).await })
    }

    fn size_bytes(&self) -> u64 {
        self.block(async {
            let client = self.client().await.ok()?;
            let row = client
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await
                .ok()?;
            u64::try_from(row.get::<_, i64>(0)).ok()
        })
        .unwrap_or(0)
    }

    fn check(&self) -> Result<(), StoreError> {
        self.block(async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(pg)?;
            Ok(())
        })
    }

    fn probe(&self) -> Result<(), StoreError> {
        self.block(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO health (id, probes) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET probes = health.probes + 1",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn writers(&self) -> usize {
        WRITERS
    }

    fn confirm(&self, order: &ServerOrder) -> Result<Status, StoreError> {
        self.block(async { orders::confirm(&self.client().await?, order).await })
    }

    fn server_order(&self, site: &str, order_id: &str) -> Result<Option<ServerOrder>, StoreError> {
        self.block(async { orders::server_order(&self.client().await?, site, order_id).await })
    }

    fn server_only_orders(&self, site: &str, since: u64, limit: usize) -> Result<Vec<ServerOrder>, StoreError> {
        self.block(async { orders::server_only(&self.client().await?, site, since, limit).await })
    }

    fn clicks(
        &self,
        site: &str,
        from: u64,
        to: u64,
        limit: usize,
        exclude: crate::traffic::Exclude,
    ) -> Result<Vec<Touch>, StoreError> {
        self.block(async { report::clicks(&self.client().await?, site, from, to, limit, exclude).await })
    }

    fn adjust(&self, adjustment: &Adjustment) -> Result<Adjusted, StoreError> {
        self.block(async { orders::adjust(&mut self.client().await?, adjustment).await })
    }

    fn adjustments(&self, site: &str, order_id: &str) -> Result<Vec<Adjustment>, StoreError> {
        self.block(async { orders::adjustments(&self.client().await?, site, order_id).await })
    }

    fn export_orders(&self) -> Result<OrdersExport, StoreError> {
        self.block(async { orders::all(&self.client().await?).await })
    }

    fn order_conversion(&self, site: &str, order_id: &str) -> Result<Option<StoredConversion>, StoreError> {
        self.block(async { postbacks::order_conversion(&self.client().await?, site, order_id).await })
    }

    fn planned(
        &self,
        site: &str,
        kind: PostbackKind,
        order_id: &str,
        adjustment_id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        self.block(async { postbacks::planned(&self.client().await?, site, kind, order_id, adjustment_id).await })
    }

    fn unplanned(&self, site: &str, since: u64, limit: usize) -> Result<Vec<Unplanned>, StoreError> {
        self.block(async { postbacks::unplanned(&self.client().await?, site, since, limit).await })
    }

    fn plan_postback(&self, plan: &Plan, delivery: Option<&Delivery>) -> Result<bool, StoreError> {
        self.block(async { postbacks::plan(&mut self.client().await?, plan, delivery).await })
    }

    fn claim_postbacks(&self, claim: &crate::store::Claim<'_>) -> Result<Vec<PostbackRow>, StoreError> {
        self.block(async { postbacks::claim(&self.client().await?, claim).await })
    }

    fn attempted(&self, site: &str, id: &str, lease: u64, outcome: &Attempted) -> Result<bool, StoreError> {
        self.block(async { postbacks::attempted(&self.client().await?, (site, id, lease), outcome).await })
    }

    fn postbacks(&self, site: &str, query: &PostbackQuery) -> Result<Vec<PostbackRow>, StoreError> {
        self.block(async { postbacks::list(&self.client().await?, site, query).await })
    }

    fn postbacks_pending(&self) -> Result<u64, StoreError> {
        self.block(async { postbacks::pending(&self.client().await?).await })
    }

    fn close(&self) -> Result<(), StoreError> {
        self.pool.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(is_url("postgres://u@h/db") && is_url("postgresql://h/db"));
        assert!(!is_url("utt.db") && !is_url("./postgres.db") && !is_url("/data/postgres://x"));
        assert_eq!(
            redact("postgres://utt:secret@db:5432/utt"),
            "postgres://utt:***@db:5432/utt"
        );
        assert_eq!(redact("postgres://utt@db/utt"), "postgres://utt@db/utt");
        assert_eq!(redact("postgres://db/utt?user=x"), "postgres://db/utt?user=x");
    }
}
