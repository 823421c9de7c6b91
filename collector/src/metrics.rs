//! `/metrics`: a prometheus-client registry. Requests and events are counted as they happen
//! (events by type and outcome, answers by route and status class, latency per route); the
//! writer's, the store's and the deriver's figures are read at scrape time by a collector.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use utt::core::wire::Status;

use crate::store::Store;
use crate::traffic::Traffic;
use crate::writer::WriterStats;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Event types as labelled; `unknown` is a rejected event whose type could not be read.
pub const TYPES: [&str; 6] = ["pageview", "conversion", "identify", "event", "consent", "unknown"];
const STATUSES: [Status; 3] = [Status::Accepted, Status::Duplicate, Status::Rejected];
/// Routes as labelled (the matched route pattern; everything else is `other`).
pub const ROUTES: [&str; 11] = [
    "/v1/events",
    "/v1/conversions",
    "/v1/conversions/{order_id}/adjustments",
    "/v1/postbacks",
    "/v1/report",
    "/v1/clicks/{click_id}",
    "/v1/cookie",
    "/healthz",
    "/metrics",
    "static",
    "other",
];
/// Status classes as labelled.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A label set of static names and values.
type Labels<const N: usize> = [(&'static str, &'static str); N];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The collector's metrics.
pub struct Metrics {
    registry: Registry,
    events: Family<Labels<2>, Counter>,
    answers: Family<Labels<2>, Counter>,
    flagged: Family<Labels<1>, Counter>,
    latency: Family<Labels<1>, Histogram, fn() -> Histogram>,
    postbacks: Family<Labels<1>, Counter>,
}

/// Postback attempts as labelled by outcome.
pub const POSTBACK_OUTCOMES: [&str; 3] = ["delivered", "retry", "failed"];

impl Metrics {
    /// The registry, with the writer's and the store's figures read at each scrape.
    pub fn new(writer: Arc<WriterStats>, store: Arc<dyn Store>) -> Metrics {
        let mut registry = Registry::default();
        let events = Family::<Labels<2>, Counter>::default();
        // Every series exists from the start (at 0), so a scrape can read any of them.
        for kind in TYPES {
            for status in STATUSES {
                drop(events.get_or_create(&[("type", kind), ("status", status.as_str())]));
            }
        }
        registry.register(
            "utt_events",
            "Events answered, by event type and outcome.",
            events.clone(),
        );
        let flagged = Family::<Labels<1>, Counter>::default();
        for class in [Traffic::Bot, Traffic::Automation] {
            drop(flagged.get_or_create(&[("class", class.as_str())]));
        }
        registry.register(
            "utt_flagged_events",
            "Events stored as bot or automation traffic (kept out of attribution where the site excludes the class), by class.",
            flagged.clone(),
        );
        let answers = Family::<Labels<2>, Counter>::default();
        registry.register(
            "utt_http_responses",
            "Answers, by route and status class (1xx to 5xx).",
            answers.clone(),
        );
        let latency = Family::<Labels<1>, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        for route in ROUTES {
            drop(latency.get_or_create(&[("route", route)]));
        }
        registry.register(
            "utt_http_request_duration_seconds",
            "Time to answer a request, by route.",
            latency.clone(),
        );
        let postbacks = Family::<Labels<1>, Counter>::default();
        for outcome in POSTBACK_OUTCOMES {
            drop(postbacks.get_or_create(&[("outcome", outcome)]));
        }
        registry.register(
            "utt_postback_attempts",
            "Partner postback attempts, by outcome: delivered, retry (failed, tried again later), failed (given up).",
            postbacks.clone(),
        );
        registry.register_collector(Box::new(Scraped { writer, store }));
        Metrics {
            registry,
            events,
            answers,
            flagged,
            latency,
            postbacks,
        }
    }

    /// Counts one event answer (`unknown` for a type not in [`TYPES`]).
    pub fn event(&self, kind: &str, status: Status) {
        let kind = TYPES.iter().find(|t| **t == kind).unwrap_or(&"unknown");
        self.events
            .get_or_create(&[("type", kind), ("status", status.as_str())])
            .inc();
    }

    /// The count for one type and outcome.
    pub fn events(&self, kind: &str, status: Status) -> u64 {
        let kind = TYPES.iter().find(|t| **t == kind).unwrap_or(&"unknown");
        self.events
            .get_or_create(&[("type", kind), ("status", status.as_str())])
            .get()
    }

    /// Counts `n` events stored with a flagged traffic class (a human class is not counted).
    pub fn flagged(&self, class: Traffic, n: u64) {
        if class != Traffic::Human && n > 0 {
            self.flagged.get_or_create(&[("class", class.as_str())]).inc_by(n);
        }
    }

    /// The count of events stored with a flagged class.
    pub fn flagged_count(&self, class: Traffic) -> u64 {
        self.flagged.get_or_create(&[("class", class.as_str())]).get()
    }

    /// Counts one postback attempt by its outcome (one of [`POSTBACK_OUTCOMES`]).
    pub fn postback(&self, outcome: &'static str) {
        self.postbacks.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// Records one answer under its route label (`other` for a route not in [`ROUTES`]):
    /// its status class and how long it took.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let route = ROUTES.iter().find(|r| **r == route).unwrap_or(&"other");
        let class = CLASSES.get(usize::from(status / 100).wrapping_sub(1)).unwrap_or(&"5xx");
        self.answers.get_or_create(&[("route", route), ("class", class)]).inc();
        self.latency
            .get_or_create(&[("route", route)])
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition ([`CONTENT_TYPE`]). It reads the store's size and the
    /// deriver's state: call it off the async workers.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("unreachable: writing to a String cannot fail");
        out
    }
}

/// The figures kept by the writer, the store and the deriver, read at each scrape.
struct Scraped {
    writer: Arc<WriterStats>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scraped")
    }
}

/// Encodes one unlabelled metric.
fn one(encoder: &mut DescriptorEncoder, name: &str, help: &str, metric: &impl EncodeMetric) -> std::fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Scraped {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let w = &self.writer;
        let count = |n: &std::sync::atomic::AtomicU64| ConstCounter::new(n.load(Ordering::Relaxed));
        let help = "Group commits (one transaction and fsync each).";
        one(&mut e, "utt_writer_commits", help, &count(&w.commits))?;
        let help = "Events written by those commits (accepted or duplicate).";
        one(&mut e, "utt_writer_events", help, &count(&w.events))?;
        let busy = Duration::from_micros(w.busy_us.load(Ordering::Relaxed)).as_secs_f64();
        let help = "Time the writer spent storing and committing.";
        one(&mut e, "utt_writer_busy_seconds", help, &ConstCounter::new(busy))?;
        let help =
            "Transactions of events that failed to commit (nothing of them stored; their requests answered 500).";
        one(&mut e, "utt_writer_commit_failures", help, &count(&w.commit_failures))?;
        let help = "1 while the store cannot commit (the latest commit or probe failed): /healthz answers 503.";
        let failing = u64::from(w.failure().is_some());
        one(&mut e, "utt_store_failing", help, &ConstGauge::new(failing))?;
        let help = "Events waiting for the writer's next commit.";
        one(
            &mut e,
            "utt_writer_queue_depth",
            help,
            &ConstGauge::new(w.queued.load(Ordering::Relaxed)),
        )?;
        let help = "Bytes of the database on disk (main file and WAL).";
        one(
            &mut e,
            "utt_database_size_bytes",
            help,
            &ConstGauge::new(self.store.size_bytes()),
        )?;
        // A store without an outbox (a test double) has none pending.
        let pending = self.store.postbacks_pending().unwrap_or(0);
        let help = "Partner postbacks planned and not yet delivered or given up.";
        one(&mut e, "utt_postbacks_pending", help, &ConstGauge::new(pending))?;
        let derive = self.store.derive_status();
        let help = "Acknowledged events whose derived rows (touches, page counts, identities) are not written yet.";
        one(&mut e, "utt_derive_lag_events", help, &ConstGauge::new(derive.lag))?;
        let help = "Failed attempts to write derived rows (each is retried every second).";
        one(&mut e, "utt_derive_failures", help, &ConstCounter::new(derive.failures))?;
        let help = "1 while the latest attempt to write derived rows failed: reads then answer late and stale.";
        one(
            &mut e,
            "utt_derive_failing",
            help,
            &ConstGauge::new(u64::from(derive.failing)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, Counts, DeriveStatus, StoreError};

    /// A store with nothing but a size and a derive status.
    struct Fixed(DeriveStatus);

    impl Store for Fixed {
        fn append(&self, _: &[&Batch]) -> Result<Vec<Status>, StoreError> {
            Ok(Vec::new())
        }
        fn conversions(
            &self,
            _: &str,
            _: u64,
            _: usize,
            _: crate::traffic::Exclude,
        ) -> Result<Vec<crate::store::StoredConversion>, StoreError> {
            Ok(Vec::new())
        }
        fn touches(&self, _: &str, _: &str, _: u64, _: u64) -> Result<Vec<crate::store::Touch>, StoreError> {
            Ok(Vec::new())
        }
        fn click(&self, _: &str, _: Option<&str>) -> Result<Option<crate::store::ClickSeen>, StoreError> {
            Ok(None)
        }
        fn conversions_near_click(
            &self,
            _: &str,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<crate::store::StoredConversion>, StoreError> {
            Ok(Vec::new())
        }
        fn event(&self, _: &str) -> Result<Option<String>, StoreError> {
            Ok(None)
        }
        fn counts(&self) -> Result<Counts, StoreError> {
            Ok(Counts::default())
        }
        fn size_bytes(&self) -> u64 {
            4096
        }
        fn derive_status(&self) -> DeriveStatus {
            self.0
        }
        fn close(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn renders_counts_buckets_and_scraped_figures() {
        let w = Arc::new(WriterStats::default());
        let derive = DeriveStatus {
            lag: 3,
            failures: 2,
            failing: true,
        };
        let m = Metrics::new(w.clone(), Arc::new(Fixed(derive)));
        m.event("pageview", Status::Accepted);
        m.event("pageview", Status::Accepted);
        m.event("conversion", Status::Duplicate);
        m.event("nonsense", Status::Rejected);
        m.request("/v1/events", 200, Duration::from_micros(700));
        m.request("/v1/events", 500, Duration::from_micros(700));
        m.request("/nowhere", 404, Duration::from_secs(10));
        w.commits.store(3, Ordering::Relaxed);
        w.events.store(40, Ordering::Relaxed);
        w.busy_us.store(12_500, Ordering::Relaxed);
        w.commit_failures.store(1, Ordering::Relaxed);
        w.queued.store(7, Ordering::Relaxed);
        w.outcome(Err(&StoreError("sqlite: database or disk is full".into())));
        let text = m.render();
        let want = [
            "utt_events_total{type=\"pageview\",status=\"accepted\"} 2\n",
            "utt_events_total{type=\"conversion\",status=\"duplicate\"} 1\n",
            "utt_events_total{type=\"unknown\",status=\"rejected\"} 1\n",
            "utt_events_total{type=\"consent\",status=\"accepted\"} 0\n",
            "utt_http_responses_total{route=\"/v1/events\",class=\"2xx\"} 1\n",
            "utt_http_responses_total{route=\"/v1/events\",class=\"5xx\"} 1\n",
            "utt_http_responses_total{route=\"other\",class=\"4xx\"} 1\n",
            "utt_http_request_duration_seconds_bucket{route=\"/v1/events\",le=\"0.0005\"} 0\n",
            "utt_http_request_duration_seconds_bucket{route=\"/v1/events\",le=\"0.001\"} 2\n",
            "utt_http_request_duration_seconds_count{route=\"/v1/events\"} 2\n",
            "utt_http_request_duration_seconds_bucket{route=\"other\",le=\"5\"} 0\n",
            "utt_http_request_duration_seconds_bucket{route=\"other\",le=\"+Inf\"} 1\n",
            "utt_http_request_duration_seconds_count{route=\"/healthz\"} 0\n",
            "utt_writer_commits_total 3\n",
            "utt_writer_events_total 40\n",
            "utt_writer_busy_seconds_total 0.0125\n",
            "utt_writer_commit_failures_total 1\n",
            "utt_store_failing 1\n",
            "utt_writer_queue_depth 7\n",
            "utt_database_size_bytes 4096\n",
            "utt_derive_lag_events 3\n",
            "utt_derive_failures_total 2\n",
            "utt_derive_failing 1\n",
            "utt_postbacks_pending 0\n",
            "utt_postback_attempts_total{outcome=\"retry\"} 0\n",
        ];
        for line in want {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("# TYPE utt_events_total counter\n"), "{text}");
        w.outcome(Ok(()));
        assert!(m.render().contains("utt_store_failing 0\n"));
    }
}
