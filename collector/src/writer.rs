//! The single writer: request handlers queue decoded events, one thread stores whatever has
//! queued up in one transaction (group commit) and answers every waiting request at once.

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
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread over a store.
    pub fn start(store: Arc<dyn Store>) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(WriterStats::default());
        let st = stats.clone();
        let handle = thread::Builder::new()
            .name("utt-writer".into())
            .spawn(move || run(store, rx, st))
            .expect("unreachable: spawning the writer thread at startup");
        Writer {
            tx,
            stats,
            thread: Mutex::new(Some(handle)),
        }
    }

    /// Stores a site's valid events durably; resolves once they are committed, with one status
    /// per event.
    pub async fn write(&self, site: &str, received: u64, events: Vec<Event>) -> Result<Vec<Status>, WriteError> {
        let n = events.len() as u64;
        // The canonical JSON and the derived rows are made here, on the request's thread, and
        // the decoded events freed here too, not by the writer.
        let batch = Batch::new(site, received, events);
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

    /// True while the writer thread runs.
    pub fn is_running(&self) -> bool {
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        t.as_ref().is_some_and(|h| !h.is_finished())
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
        let _ = self.tx.send(Job::Stop).await;
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job>, stats: Arc<WriterStats>) {
    let mut stop = false;
    while !stop {
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
        Err(e) if jobs.len() > 1 => {
            // One bad batch must not fail its neighbours: retry each on its own. The store
            // fails only if none of them commits.
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
