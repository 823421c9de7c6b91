//! Prometheus metrics kept in atomics: events by type and outcome, request latency per route,
//! and the gauges read at scrape time.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use utt::core::wire::Status;

use crate::store::DeriveStatus;
use crate::writer::WriterStats;

/// Event types as labelled; `unknown` is a rejected event whose type could not be read.
pub const TYPES: [&str; 6] = ["pageview", "conversion", "identify", "event", "consent", "unknown"];
const STATUSES: [Status; 3] = [Status::Accepted, Status::Duplicate, Status::Rejected];
/// Routes as labelled (the matched route pattern; everything else is `other`).
pub const ROUTES: [&str; 8] = [
    "/v1/events",
    "/v1/conversions",
    "/v1/clicks/{click_id}",
    "/v1/cookie",
    "/healthz",
    "/metrics",
    "static",
    "other",
];
/// Histogram bucket upper bounds, in microseconds.
const BUCKETS_US: [u64; 12] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000,
];

struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// The collector's counters.
pub struct Metrics {
    events: [[AtomicU64; 3]; TYPES.len()],
    latency: [Histogram; ROUTES.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            events: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| Histogram {
                buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                count: AtomicU64::new(0),
                sum_us: AtomicU64::new(0),
            }),
        }
    }
}

impl Metrics {
    /// The counter of one type (`unknown` for any other) and outcome.
    fn counter(&self, kind: &str, status: Status) -> &AtomicU64 {
        let t = TYPES.iter().position(|t| *t == kind).unwrap_or(TYPES.len() - 1);
        let s = STATUSES.iter().position(|s| *s == status).unwrap_or(0);
        &self.events[t][s]
    }

    /// Counts one event answer.
    pub fn event(&self, kind: &str, status: Status) {
        self.counter(kind, status).fetch_add(1, Ordering::Relaxed);
    }

    /// The count for one type and outcome.
    pub fn events(&self, kind: &str, status: Status) -> u64 {
        self.counter(kind, status).load(Ordering::Relaxed)
    }

    /// Records one request's latency under its route label.
    pub fn request(&self, route: &str, took: Duration) {
        let r = ROUTES.iter().position(|r| *r == route).unwrap_or(ROUTES.len() - 1);
        let h = &self.latency[r];
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        for (i, le) in BUCKETS_US.iter().enumerate() {
            if us <= *le {
                h.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Renders the Prometheus text exposition, with the writer's figures and the gauges passed in.
    pub fn render(&self, writer: &WriterStats, queue_depth: u64, db_bytes: u64, derive: DeriveStatus) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "utt_events_total",
            "counter",
            "Events answered, by event type and outcome.",
        );
        for (t, kind) in TYPES.iter().enumerate() {
            for (s, status) in STATUSES.iter().enumerate() {
                let n = self.events[t][s].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "utt_events_total{{type=\"{kind}\",status=\"{}\"}} {n}",
                    status.as_str()
                );
            }
        }
        let help = "Time to answer a request, by route.";
        header(&mut out, "utt_http_request_duration_seconds", "histogram", help);
        for (r, route) in ROUTES.iter().enumerate() {
            let h = &self.latency[r];
            for (i, le) in BUCKETS_US.iter().enumerate() {
                let n = h.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "utt_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{}\"}} {n}",
                    seconds(*le)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "utt_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let sum = seconds(h.sum_us.load(Ordering::Relaxed));
            let _ = writeln!(out, "utt_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(
                out,
                "utt_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
        let commits = writer.commits.load(Ordering::Relaxed);
        let written = writer.events.load(Ordering::Relaxed);
        let busy = seconds(writer.busy_us.load(Ordering::Relaxed));
        let help = "Group commits (one transaction and fsync each).";
        scalar(&mut out, "utt_writer_commits_total", "counter", help, commits);
        let help = "Events written by those commits (accepted or duplicate).";
        scalar(&mut out, "utt_writer_events_total", "counter", help, written);
        let help = "Time the writer spent storing and committing.";
        scalar(&mut out, "utt_writer_busy_seconds_total", "counter", help, busy);
        let help = "Events waiting for the writer's next commit.";
        scalar(&mut out, "utt_writer_queue_depth", "gauge", help, queue_depth);
        let help = "Bytes of the database on disk (main file and WAL).";
        scalar(&mut out, "utt_database_size_bytes", "gauge", help, db_bytes);
        let help = "Acknowledged events whose derived rows (touches, page counts, identities) are not written yet.";
        scalar(&mut out, "utt_derive_lag_events", "gauge", help, derive.lag);
        let help = "Failed attempts to write derived rows (each is retried every second).";
        scalar(&mut out, "utt_derive_failures_total", "counter", help, derive.failures);
        let help = "1 while the latest attempt to write derived rows failed: reads then answer late and stale.";
        scalar(&mut out, "utt_derive_failing", "gauge", help, u8::from(derive.failing));
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric with one unlabelled value, with its header.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Microseconds as decimal seconds, without floating point (`2500` → `0.0025`).
fn seconds(us: u64) -> String {
    let frac = format!("{:06}", us % 1_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{}", us / 1_000_000)
    } else {
        format!("{}.{frac}", us / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_text() {
        for (us, want) in [
            (0, "0"),
            (500, "0.0005"),
            (2_500, "0.0025"),
            (1_000_000, "1"),
            (1_250_000, "1.25"),
        ] {
            assert_eq!(seconds(us), want);
        }
    }

    #[test]
    fn renders_counts_and_buckets() {
        let m = Metrics::default();
        m.event("pageview", Status::Accepted);
        m.event("pageview", Status::Accepted);
        m.event("conversion", Status::Duplicate);
        m.event("nonsense", Status::Rejected);
        m.request("/v1/events", Duration::from_micros(700));
        m.request("/nowhere", Duration::from_secs(10));
        let w = WriterStats::default();
        w.commits.store(3, Ordering::Relaxed);
        w.events.store(40, Ordering::Relaxed);
        w.busy_us.store(12_500, Ordering::Relaxed);
        let derive = DeriveStatus {
            lag: 3,
            failures: 2,
            failing: true,
        };
        let text = m.render(&w, 7, 4096, derive);
        let want = [
            "utt_events_total{type=\"pageview\",status=\"accepted\"} 2\n",
            "utt_events_total{type=\"conversion\",status=\"duplicate\"} 1\n",
            "utt_events_total{type=\"unknown\",status=\"rejected\"} 1\n",
            "utt_http_request_duration_seconds_bucket{route=\"/v1/events\",le=\"0.0005\"} 0\n",
            "utt_http_request_duration_seconds_bucket{route=\"/v1/events\",le=\"0.001\"} 1\n",
            "utt_http_request_duration_seconds_count{route=\"/v1/events\"} 1\n",
            "utt_http_request_duration_seconds_bucket{route=\"other\",le=\"5\"} 0\n",
            "utt_http_request_duration_seconds_bucket{route=\"other\",le=\"+Inf\"} 1\n",
            "utt_writer_commits_total 3\n",
            "utt_writer_events_total 40\n",
            "utt_writer_busy_seconds_total 0.0125\n",
            "utt_writer_queue_depth 7\n",
            "utt_database_size_bytes 4096\n",
            "utt_derive_lag_events 3\n",
            "utt_derive_failures_total 2\n",
            "utt_derive_failing 1\n",
        ];
        for line in want {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
