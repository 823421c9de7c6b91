//! The writer: request handlers queue decoded events, a writer thread stores whatever has
//! queued up in one transaction (group commit) and answers every waiting request at once. A
//! store that can commit several transactions at once ([`Store::writers`]: PostgreSQL, not
//! SQLite) gets that many writer threads taking groups from the one queue in turn, so that one
//! group is gathered while others commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use utt::core::wire::{Event, Status};

use crate::store::{Batch, Store, StoreError};

/// The most events stored in one transaction: large enough to amortise the fsync, small
/// enough that one commit does not hold waiting requests for long.
pub const MAX_GROUP: usize = 8192;

/// How many batches may wait for the writer before handlers wait to queue.
const QUEUE: usize = 4096;

/// The writer's answer: the statuses, and the records handed back so that freeing them costs
/// the request's thread, not the single writer's.
type Answer = (Result<Vec<Status>, StoreError>, Batch);

enum Job {
    Write(Batch, oneshot::Sender<Answer>),
    /// Try a small commit ([`Store::probe`]) and answer when it is done.
    Probe(oneshot::Sender<()>),
    Stop,
}

/// How often, at most, a failing store is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why a write did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// The writer is stopping or stopped.
    Closed,
    /// The store failed (logged by the caller).
    Store(StoreError),
}

/// Counters of the writer's work and whether the store can commit, for `/metrics` and
/// `/healthz`.
#[derive(Default)]
pub struct WriterStats {
    /// Transactions committed (or rolled back).
    pub commits: AtomicU64,
    /// Events they carried.
    pub events: AtomicU64,
    /// Microseconds spent in `Store::append`, commit and fsync included.
    pub busy_us: AtomicU64,
    /// Transactions of events that failed (nothing of them stored; a group retried batch by
    /// batch counts each failed try).
    pub commit_failures: AtomicU64,
    /// Events queued and not yet committed.
    pub queued: AtomicU64,
    failure: Mutex<Option<Failure>>,
}

/// Why the store cannot commit, while it cannot.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The store's error.
    pub error: String,
    /// When the failures began.
    pub since: Instant,
    /// The latest attempt (a commit, a probe or a check).
    pub tried: Instant,
}

impl WriterStats {
    /// Records the outcome of an attempt to commit: a success ends a failure, an error starts
    /// one or updates it.
    pub fn outcome(&self, result: Result<(), &StoreError>) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match result {
            Ok(()) => {
                if let Some(old) = f.take() {
                    tracing::info!(error = %old.error, failing_for = ?old.since.elapsed(), "the store commits again");
                }
            }
            Err(e) => {
                let since = f.as_ref().map_or(now, |old| old.since);
                if f.is_none() {
                    tracing::error!(error = %e, "the store cannot commit: /healthz answers 503 until it can");
                }
                *f = Some(Failure {
                    error: e.0.clone(),
                    since,
                    tried: now,
                });
            }
        }
    }

    /// The current failure, if the latest attempt failed.
    pub fn failure(&self) -> Option<Failure> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// True (and the failure marked as tried now) when the store is failing and was last tried
    /// at least [`PROBE_EVERY`] ago: then the caller probes it.
    fn probe_due(&self) -> bool {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match f.as_mut() {
            Some(f) if f.tried.elapsed() >= PROBE_EVERY => {
                f.tried = Instant::now();
                true
            }
            _ => false,
        }
    }
}

/// The handle request handlers use to reach the writer thread.
pub struct Writer {
    tx: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer threads over a store ([`Store::writers`] of them).
    pub fn start(store: Arc<dyn Store>) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(WriterStats::default());
        let threads = (0..store.writers().max(1))
            .map(|_| {
                let (store, rx, st) = (store.clone(), rx.clone(), stats.clone());
                thread::Builder::new()
                    .name("utt-writer".into())
                    .spawn(move || run(store, rx, st))
                    .expect("unreachable: spawning a writer thread at startup")
            })
            .collect();
        Writer {
            tx,
            stats,
            threads: Mutex::new(threads),
        }
    }

    /// Stores a site's valid events durably; resolves once they are committed, with one status
    /// per event.
    pub async fn write(
        &self,
        site: &str,
        received: u64,
        events: Vec<Event>,
        traffic: crate::traffic::Traffic,
    ) -> Result<Vec<Status>, WriteError> {
        let n = events.len() as u64;
        // The canonical JSON and the derived rows are made here, on the request's thread, and
        // the decoded events freed here too, not by the writer.
        let batch = Batch::classified(site, received, events, traffic);
        let (reply, answer) = oneshot::channel();
        self.stats.queued.fetch_add(n, Ordering::Relaxed);
        if self.tx.send(Job::Write(batch, reply)).await.is_err() {
            self.stats.queued.fetch_sub(n, Ordering::Relaxed);
            return Err(WriteError::Closed);
        }
        match answer.await {
            Ok((Ok(statuses), _records)) => Ok(statuses),
            Ok((Err(e), _records)) => Err(WriteError::Store(e)),
            Err(_) => Err(WriteError::Closed),
        }
    }

    /// True while every writer thread runs.
    pub fn is_running(&self) -> bool {
        let t = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        !t.is_empty() && t.iter().all(|h| !h.is_finished())
    }

    /// Events queued and not yet committed.
    pub fn queue_depth(&self) -> u64 {
        self.stats.queued.load(Ordering::Relaxed)
    }

    /// The writer's counters and the store's failure, if it cannot commit.
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// While the store cannot commit, probes it (at most every [`PROBE_EVERY`]), so that it is
    /// seen to recover even when no events come; then says whether it still fails.
    pub async fn recheck(&self) -> Option<Failure> {
        if self.stats.probe_due() {
            let (reply, done) = oneshot::channel();
            if self.tx.send(Job::Probe(reply)).await.is_ok() {
                let _ = done.await;
            }
        }
        self.stats.failure()
    }

    /// Stores everything queued so far, then stops the thread and waits for it. Writes queued
    /// afterwards fail with [`WriteError::Closed`].
    pub async fn close(&self) {
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        // One stop for each thread: each takes one and ends, after the jobs queued before it.
        for _ in &handles {
            let _ = self.tx.send(Job::Stop).await;
        }
        for h in handles {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn run(store: Arc<dyn Store>, rx: Arc<Mutex<mpsc::Receiver<Job>>>, stats: Arc<WriterStats>) {
    let mut stop = false;
    while !stop {
        // The queue is this thread's while it gathers a group; the other writers (if any) take
        // the next group while this one commits.
        let mut rx = rx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(first) = rx.blocking_recv() else { break };
        let mut jobs = Vec::new();
        let mut probes = Vec::new();
        let mut events = 0;
        let mut next = Some(first);
        // Take everything that queued while the previous commit ran, up to the group limit, and
        // commit at once: under load the queue fills while a commit runs, so groups grow by
        // themselves. (Waiting a little for a fuller group was measured a loss once the commit
        // got cheaper: the writer then sat idle while requests waited.)
        while let Some(job) = next.take() {
            match job {
                Job::Stop => stop = true,
                Job::Probe(reply) => probes.push(reply),
                Job::Write(batch, reply) => {
                    events += batch.records.len();
                    jobs.push((batch, reply));
                }
            }
            if stop || events >= MAX_GROUP {
                break;
            }
            next = rx.try_recv().ok();
        }
        drop(rx);
        if !jobs.is_empty() {
            let started = Instant::now();
            commit(store.as_ref(), jobs, &stats);
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.events.fetch_add(events as u64, Ordering::Relaxed);
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            stats.busy_us.fetch_add(us, Ordering::Relaxed);
        } else if !probes.is_empty() {
            // Nothing to commit: a small commit of its own says whether the store can.
            stats.outcome(store.probe().as_ref().map(drop));
        }
        for reply in probes {
            let _ = reply.send(());
        }
    }
    // Anything still queued after Stop is refused when `rx` drops: its senders see `Closed`.
}

type Reply = oneshot::Sender<Answer>;

fn commit(store: &dyn Store, jobs: Vec<(Batch, Reply)>, stats: &WriterStats) {
    let group: Vec<&Batch> = jobs.iter().map(|(b, _)| b).collect();
    let n: u64 = group.iter().map(|b| b.records.len() as u64).sum();
    let result = store.append(&group);
    drop(group);
    stats.queued.fetch_sub(n, Ordering::Relaxed);
    match result {
        Ok(statuses) => {
            stats.outcome(Ok(()));
            let mut rest = statuses.into_iter();
            for (batch, reply) in jobs {
                let mine: Vec<Status> = rest.by_ref().take(batch.records.len()).collect();
                let _ = reply.send((Ok(mine), batch));
            }
        }
        Err(e) if jobs.len() > 1 && !e.is_unavailable() => {
            // One bad batch must not fail its neighbours: retry each on its own. The store
            // fails only if none of them commits. (A database out of reach fails them all.)
            tracing::warn!(error = %e, jobs = jobs.len(), "group commit failed; retrying batches one by one");
            stats.commit_failures.fetch_add(1, Ordering::Relaxed);
            let mut last = Err(e);
            for (batch, reply) in jobs {
                let result = store.append(&[&batch]);
                match &result {
                    Ok(_) => last = Ok(()),
                    Err(e) => {
                        stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                        if last.is_err() {
                            last = Err(StoreError(e.0.clone()));
                        }
                    }
                }
                let _ = reply.send((result, batch));
            }
            stats.outcome(last.as_ref().map(|_| ()));
        }
        Err(e) => {
            stats.commit_failures.fetch_add(1, Ordering::Relaxed);
            stats.outcome(Err(&e));
            for (batch, reply) in jobs {
                let _ = reply.send((Err(StoreError(e.0.clone())), batch));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Condvar;

    use utt::core::wire::Kind;

    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{ClickSeen, Counts, DeriveStatus, StoredConversion, Touch};

    /// The event ID whose group cannot commit.
    const BAD: &str = "019ac0f1-0000-7000-8000-00000000bad0";

    /// The real store, except that a group holding the event [`BAD`] fails to commit as a
    /// whole (as a constraint or an I/O error inside the transaction would), and that the
    /// first append waits until the test opens the gate, so that batches queued meanwhile
    /// reach the writer as one group. It records each append: its batches' first event IDs,
    /// and whether it committed.
    struct Flaky {
        inner: SqliteStore,
        gate: Mutex<(bool, bool)>,
        moved: Condvar,
        appends: Mutex<Vec<(Vec<String>, bool)>>,
    }

    impl Flaky {
        /// Waits until the first append is held at the gate.
        fn wait_held(&self) {
            let mut g = self.gate.lock().unwrap();
            while !g.0 {
                g = self.moved.wait(g).unwrap();
            }
        }

        fn open_gate(&self) {
            self.gate.lock().unwrap().1 = true;
            self.moved.notify_all();
        }
    }

    impl Store for Flaky {
        fn append(&self, batches: &[&Batch]) -> Result<Vec<Status>, StoreError> {
            let mut g = self.gate.lock().unwrap();
            g.0 = true;
            self.moved.notify_all();
            while !g.1 {
                g = self.moved.wait(g).unwrap();
            }
            drop(g);
            let firsts = batches.iter().map(|b| b.records[0].id.clone()).collect();
            let result = if batches.iter().any(|b| b.records.iter().any(|r| r.id == BAD)) {
                Err(StoreError(
                    "sqlite: CHECK constraint failed (the test's bad event)".into(),
                ))
            } else {
                self.inner.append(batches)
            };
            self.appends.lock().unwrap().push((firsts, result.is_ok()));
            result
        }
        fn conversions(
            &self,
            site: &str,
            since: u64,
            limit: usize,
            exclude: crate::traffic::Exclude,
        ) -> Result<Vec<StoredConversion>, StoreError> {
            self.inner.conversions(site, since, limit, exclude)
        }
        fn touches(&self, site: &str, visitor: &str, from: u64, to: u64) -> Result<Vec<Touch>, StoreError> {
            self.inner.touches(site, visitor, from, to)
        }
        fn click(&self, value: &str, site: Option<&str>) -> Result<Option<ClickSeen>, StoreError> {
            self.inner.click(value, site)
        }
        fn conversions_near_click(
            &self,
            value: &str,
            site: Option<&str>,
            limit: usize,
        ) -> Result<Vec<StoredConversion>, StoreError> {
            self.inner.conversions_near_click(value, site, limit)
        }
        fn event(&self, id: &str) -> Result<Option<String>, StoreError> {
            self.inner.event(id)
        }
        fn counts(&self) -> Result<Counts, StoreError> {
            self.inner.counts()
        }
        fn size_bytes(&self) -> u64 {
            self.inner.size_bytes()
        }
        fn derive_status(&self) -> DeriveStatus {
            self.inner.derive_status()
        }
        fn close(&self) -> Result<(), StoreError> {
            self.inner.close()
        }
    }

    const T0: u64 = 1_764_150_000_000;

    /// A page view with event ID number `n` (or [`BAD`] for `n == 0xbad0`).
    fn view(n: u64) -> Event {
        Event {
            id: format!("019ac0f1-0000-7000-8000-{n:012x}"),
            at: T0 + n,
            visitor: Some("5b0e3f0a-6c1d-4f3e-9a8b-2c7d1e0f4a5b".into()),
            session: Some("0c9a7e52-3b1f-4d6a-8e2c-9f1b3d5a7c9e".into()),
            url: format!("https://shop.example/p/{n}"),
            referrer: String::new(),
            clicks: Vec::new(),
            kind: Kind::PageView {
                title: String::new(),
                props: None,
            },
        }
    }

    fn ids(events: &[Event]) -> Vec<String> {
        events.iter().map(|e| e.id.clone()).collect()
    }

    /// One bad batch in a group must not fail its neighbours: the group's transaction fails,
    /// the writer retries each batch on its own, the others are stored and answered
    /// `accepted`, only the bad one's request gets the store's error (nothing of it stored,
    /// its good event included), and the store is not reported failing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_group_is_retried_batch_by_batch() {
        let dir = std::env::temp_dir().join(format!("utt-writer-flaky-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(Flaky {
            inner: SqliteStore::open(&dir.join("utt.db")).unwrap(),
            gate: Mutex::new((false, false)),
            moved: Condvar::new(),
            appends: Mutex::new(Vec::new()),
        });
        let writer = Arc::new(Writer::start(store.clone()));
        let send = |events: Vec<Event>| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.write("demo", T0, events, crate::traffic::Traffic::Human).await })
        };

        // A first batch holds the writer at the gate while three more queue up behind it.
        let first = send(vec![view(1)]);
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.wait_held()).await.unwrap();
        let good_a = vec![view(2), view(3)];
        let bad = vec![view(4), view(0xbad0)];
        let good_b = vec![view(5)];
        // Each in the queue before the next is sent, so the group holds them in this order.
        let mut answers = Vec::new();
        for (n, events) in [good_a.clone(), bad.clone(), good_b.clone()].into_iter().enumerate() {
            answers.push(send(events));
            while writer.tx.max_capacity() - writer.tx.capacity() <= n {
                tokio::task::yield_now().await;
            }
        }
        store.open_gate();

        assert_eq!(first.await.unwrap().unwrap(), [Status::Accepted]);
        let [a, b, c]: [_; 3] = answers.try_into().unwrap();
        let neighbour = "a good neighbour of the bad batch is stored and answered";
        assert_eq!(a.await.unwrap().expect(neighbour), [Status::Accepted, Status::Accepted]);
        match b.await.unwrap() {
            Err(WriteError::Store(e)) => assert!(e.0.contains("bad event"), "{e:?}"),
            other => panic!("the bad batch was answered {other:?}"),
        }
        assert_eq!(c.await.unwrap().expect(neighbour), [Status::Accepted]);

        // The three queued batches were one group, which failed, then were tried one by one.
        let appends = store.appends.lock().unwrap().clone();
        let id = |e: &Event| e.id.clone();
        assert_eq!(
            appends,
            [
                (vec![id(&view(1))], true),
                (vec![id(&good_a[0]), id(&bad[0]), id(&good_b[0])], false),
                (vec![id(&good_a[0])], true),
                (vec![id(&bad[0])], false),
                (vec![id(&good_b[0])], true),
            ]
        );
        for e in ids(&good_a).iter().chain(&ids(&good_b)) {
            assert!(store.has_event(e).unwrap(), "{e} was acknowledged but not stored");
        }
        for e in ids(&bad) {
            assert!(!store.has_event(&e).unwrap(), "{e} of the failed batch was stored");
        }
        assert_eq!(store.counts().unwrap().events, 4);
        let stats = writer.stats();
        assert_eq!(
            stats.commit_failures.load(Ordering::Relaxed),
            2,
            "the group and the bad batch"
        );
        assert!(stats.failure().is_none(), "the store commits: not reported failing");
        assert_eq!(writer.queue_depth(), 0);

        // Sent again, the stored ones are duplicates; the failed batch's good event was never
        // stored, so it is new.
        assert_eq!(
            send(good_a).await.unwrap().unwrap(),
            [Status::Duplicate, Status::Duplicate]
        );
        assert_eq!(send(vec![view(4)]).await.unwrap().unwrap(), [Status::Accepted]);
        writer.close().await;
        store.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
