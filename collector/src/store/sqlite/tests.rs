//! The SQLite store's own tests (the contract every store keeps is in `tests/store_contract.rs`).
use super::*;
use crate::store::tests::journey;
use crate::store::Derived;
use crate::traffic::Traffic;
use rusqlite::params;
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

/// The postback planner's sweep finds server confirmations by arrival through an index
/// (schema version 5), not by scanning the site's confirmations.
#[test]
fn server_orders_are_found_by_arrival_through_an_index() {
    let dir = fresh_dir("utt-received");
    let store = SqliteStore::open(&dir.join("r.db")).unwrap();
    let plan: Vec<String> = store
        .read(|c| {
            let mut st = c.prepare(
                "EXPLAIN QUERY PLAN SELECT order_id FROM server_orders WHERE site = 'demo' AND received >= 5",
            )?;
            let rows = st.query_map([], |r| r.get::<_, String>(3))?;
            rows.collect()
        })
        .unwrap();
    assert!(plan.iter().any(|p| p.contains("server_orders_received")), "{plan:?}");
    let version: i64 = store
        .read(|c| c.query_row("SELECT max(version) FROM utt_schema", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(version, 5);
    store.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
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
        report::CLICKS_SQL.into(),
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
                            && !["SCAN CONSTANT ROW", "SCAN carriers", "SCAN k", "SCAN l", "SCAN v"]
                                .contains(&l.as_str())
                    })
                    .collect();
                assert!(scans.is_empty(), "{q}\n{plan:#?}");
                // An index, or the primary key of a `WITHOUT ROWID` table (which is one).
                let by_index = |l: &String| l.contains("INDEX") || l.contains("USING PRIMARY KEY");
                assert!(plan.iter().any(by_index), "{q}\n{plan:#?}");
                // The report's index (the site's touches by time) serves the report only: a
                // journey's or a click's read takes the visitor's or the click's own rows.
                if !q.contains("GROUP BY param, network, value, click_at") {
                    assert!(!plan.iter().any(|l| l.contains("touches_at")), "{q}\n{plan:#?}");
                }
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
    Derived::of(events, Traffic::Human).encode("demo", &mut rows);
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
                "SELECT site, visitor, param, value, click_at, network, path, first_seen, last_seen, traffic FROM touches ORDER BY 1, 2, 3, 4, 5",
                "SELECT site, value, pages, '', '', '', '', '', '', '' FROM click_pages ORDER BY 1, 2",
                "SELECT site, kind, value, visitor, at, '', '', '', '', '' FROM identities ORDER BY 1, 2, 3, 4",
            ] {
                let mut st = c.prepare(sql)?;
                let rows = st.query_map([], |r| {
                    (0..10).map(|i| r.get::<_, rusqlite::types::Value>(i)).collect::<rusqlite::Result<Vec<_>>>()
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
        for (table, columns) in derive::TABLES {
            c.execute_batch(&format!("INSERT INTO main.{table} SELECT {columns} FROM now.{table};"))
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
    // counts and sightings merge across batches and commits; a second site too. The later
    // batches are flagged (a bot's on the demo site, whose touches stay human by the earlier
    // batch; an automated browser's on the other), so the rebuild must derive the classes too.
    store.append(&[&Batch::new("demo", 1, journey())]).unwrap();
    let mut again = journey_again("aaaaaaaa");
    for e in &mut again {
        e.at += 1_000;
    }
    let elsewhere = journey_again("bbbbbbbb");
    for (pair, copy) in again.chunks(2).zip(elsewhere.chunks(2)) {
        store
            .append(&[
                &Batch::classified("demo", 2, pair.to_vec(), Traffic::Bot),
                &Batch::classified("other", 2, copy.to_vec(), Traffic::Automation),
            ])
            .unwrap();
    }
    let want = derived_tables(&store);
    assert!(want.iter().all(|t| !t.is_empty()), "{want:?}");
    let class = |site: &str| -> Vec<rusqlite::types::Value> {
        want[0]
            .iter()
            .filter(|r| r[0] == rusqlite::types::Value::Text(site.into()))
            .map(|r| r[9].clone())
            .collect()
    };
    let (human, automation) = (rusqlite::types::Value::Integer(0), rusqlite::types::Value::Integer(2));
    assert!(
        !class("demo").is_empty() && class("demo").iter().all(|c| *c == human),
        "{want:?}"
    );
    assert!(
        !class("other").is_empty() && class("other").iter().all(|c| *c == automation),
        "{want:?}"
    );
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
