//! The durable outbound queue: events are persisted before they are sent, removed only when the
//! collector has answered for them, retried with backoff otherwise, and bounded so that
//! conversions are the last thing ever dropped.

use alloc::string::String;
use alloc::vec::Vec;

use super::json::{self, write_u64, Json};
use super::retry::{self, Disposition};
use super::wire::{self, Status};

/// The most bytes of events kept waiting (their wire JSON, as stored in localStorage): a
/// stated share of the origin's localStorage (browsers give each origin about 5 MB), enough for
/// a burst of well over a thousand ordinary events.
pub const MAX_BYTES: usize = 1_000_000;
/// The part of [`MAX_BYTES`] only conversions may use: when page views and custom events have
/// filled the rest, a conversion still fits.
pub const CONVERSION_RESERVE: usize = 200_000;
/// The most bytes of events in one batch (`fetch` and `sendBeacon` alike; browsers cap a
/// page's keepalive requests at about 64 KB in flight in all).
pub const MAX_BATCH_BYTES: usize = 60_000;
/// How many acknowledged IDs are remembered, so that another tab's stale copy of the stored
/// queue does not bring them back.
const ACKED_MEMORY: usize = 500;

/// One event waiting for the collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The event ID.
    pub id: String,
    /// The event as wire JSON, exactly the bytes that will be sent.
    pub body: String,
    /// Conversions are dropped last.
    pub conversion: bool,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not to be sent before this time (ms).
    pub not_before: u64,
    /// Sent and not answered yet (not persisted: after a reload it is simply due).
    pub in_flight: bool,
}

/// What became of a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Events the collector stored (or already had).
    pub delivered: usize,
    /// Events dropped for good, with the reason.
    pub dropped: Vec<(String, String)>,
    /// Events kept for another attempt.
    pub retrying: usize,
}

/// The queue.
#[derive(Debug, Default)]
pub struct Queue {
    items: Vec<Pending>,
    acked: Vec<String>,
    dirty: bool,
}

impl Queue {
    /// The waiting events, oldest first.
    pub fn items(&self) -> &[Pending] {
        &self.items
    }

    /// True when the stored copy is out of date.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The bytes of the events waiting.
    pub fn bytes(&self) -> usize {
        self.items.iter().map(|p| p.body.len()).sum()
    }

    /// Adds an event, or refuses it (`false`) when it does not fit the budget: nothing queued is
    /// ever pushed out, so an event once queued is kept until the collector answers for it.
    /// Page views and custom events leave [`CONVERSION_RESERVE`] free for conversions.
    pub fn push(&mut self, id: String, body: String, conversion: bool, now: u64) -> bool {
        let limit = if conversion {
            MAX_BYTES
        } else {
            MAX_BYTES - CONVERSION_RESERVE
        };
        if self.bytes() + body.len() > limit {
            return false;
        }
        self.items.push(Pending {
            id,
            body,
            conversion,
            attempts: 0,
            not_before: now,
            in_flight: false,
        });
        self.dirty = true;
        true
    }

    /// Picks the next batch: due events not in flight, conversions first, within the byte and
    /// count limits, and marks them in flight. `None` when nothing is due.
    pub fn take(&mut self, now: u64) -> Option<Vec<String>> {
        let mut ids = Vec::new();
        let mut bytes = 0;
        for pass_conversions in [true, false] {
            for p in self.items.iter_mut() {
                if p.conversion != pass_conversions || p.in_flight || p.not_before > now {
                    continue;
                }
                if ids.len() >= wire::limits::MAX_EVENTS || (bytes + p.body.len() > MAX_BATCH_BYTES && !ids.is_empty())
                {
                    break;
                }
                bytes += p.body.len() + 1;
                p.in_flight = true;
                ids.push(p.id.clone());
            }
        }
        (!ids.is_empty()).then_some(ids)
    }

    /// The bodies of the given events, in the same order, for [`wire::write_batch`].
    pub fn bodies<'a>(&'a self, ids: &[String]) -> Vec<&'a str> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(p) = self.items.iter().find(|p| &p.id == id) {
                out.push(p.body.as_str());
            }
        }
        out
    }

    /// Everything waiting, in flight or not, within one batch's limits: what a page about to be
    /// hidden hands to `sendBeacon`. The events stay queued (and persisted) until an answer
    /// comes, so a beacon that is lost costs nothing; the collector drops the duplicates.
    pub fn for_beacon(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut bytes = 0;
        for pass_conversions in [true, false] {
            for p in self.items.iter().filter(|p| p.conversion == pass_conversions) {
                if ids.len() >= wire::limits::MAX_EVENTS || bytes + p.body.len() > MAX_BATCH_BYTES {
                    break;
                }
                bytes += p.body.len() + 1;
                ids.push(p.id.clone());
            }
        }
        ids
    }

    /// The earliest time something not in flight becomes due.
    pub fn next_due(&self) -> Option<u64> {
        self.items.iter().filter(|p| !p.in_flight).map(|p| p.not_before).min()
    }

    /// Applies the collector's answer to a batch. `status` is the HTTP status (0: the request
    /// failed), `answer` the body when there was one, `retry_after` the header's value.
    pub fn settle(
        &mut self,
        ids: &[String],
        status: u16,
        answer: Option<&str>,
        retry_after: Option<&str>,
        now: u64,
        jitter: u32,
    ) -> Settled {
        let mut out = Settled::default();
        let outcomes = match retry::disposition(status) {
            Disposition::Delivered => answer.and_then(wire::read_outcomes),
            _ => None,
        };
        let wait = retry_after.and_then(|v| retry::parse_retry_after(v, now));
        for id in ids {
            let Some(at) = self.items.iter().position(|p| &p.id == id) else {
                continue;
            };
            let verdict = match (retry::disposition(status), &outcomes) {
                (Disposition::Delivered, Some(list)) => match list.iter().find(|o| o.id.as_deref() == Some(id)) {
                    Some(o) if o.status == Status::Rejected => Err(o
                        .reason
                        .clone()
                        .unwrap_or_else(|| String::from(crate::debug_text!("rejected by the collector")))),
                    Some(_) => Ok(true),
                    // An answer that does not mention an event has not stored it: try again.
                    None => Ok(false),
                },
                // A 2xx without a readable answer proves nothing about each event: try again.
                (Disposition::Delivered, None) | (Disposition::Retry, _) => Ok(false),
                (Disposition::Drop(reason), _) => Err(String::from(reason)),
            };
            match verdict {
                Ok(true) => {
                    self.forget(at);
                    out.delivered += 1;
                }
                Err(reason) => {
                    if let Some(p) = self.forget(at) {
                        out.dropped.push((p.id, reason));
                    }
                }
                Ok(false) => {
                    let Some(p) = self.items.get_mut(at) else { continue };
                    p.in_flight = false;
                    p.attempts = p.attempts.saturating_add(1);
                    p.not_before = now.saturating_add(retry::next_delay(p.attempts - 1, jitter, wait));
                    out.retrying += 1;
                }
            }
        }
        self.dirty = true;
        out
    }

    fn forget(&mut self, at: usize) -> Option<Pending> {
        let p = super::remove_at(&mut self.items, at)?;
        if self.acked.len() >= ACKED_MEMORY {
            super::remove_at(&mut self.acked, 0);
        }
        self.acked.push(p.id.clone());
        Some(p)
    }

    /// Drops everything (consent withdrawn).
    pub fn clear(&mut self) {
        self.items.clear();
        self.dirty = true;
    }

    /// Makes the next attempt of every waiting event due now (the browser came back online, or
    /// the site called `flush`).
    pub fn hurry(&mut self, now: u64) {
        for p in self.items.iter_mut() {
            p.not_before = p.not_before.min(now);
        }
    }

    /// The stored form: `[{"e":event,"a":attempts,"n":not_before},...]`.
    pub fn encode(&self) -> String {
        let mut out = String::from("[");
        for (i, p) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"e\":");
            out.push_str(&p.body);
            out.push_str(",\"a\":");
            write_u64(&mut out, p.attempts as u64);
            out.push_str(",\"n\":");
            write_u64(&mut out, p.not_before);
            out.push('}');
        }
        out.push(']');
        out
    }

    /// Marks the stored copy as written.
    pub fn saved(&mut self) {
        self.dirty = false;
    }

    /// Adds the events of a stored copy (this page's earlier self, or another tab's) that this
    /// queue does not have and has not seen acknowledged. Storage is not trusted: an entry must
    /// be an object with a UUID `id` and a known `type`, or it is ignored. The collector
    /// validates every field again; the tag checks only what it needs to file the entry, which
    /// keeps the full event reader out of the wasm.
    pub fn merge_stored(&mut self, text: &str) {
        let Ok(Json::Arr(list)) = json::parse(text) else { return };
        for entry in list {
            let Some(e) = entry.get("e") else { continue };
            let Some(id) = e.get("id").and_then(Json::as_str).filter(|id| wire::is_uuid(id)) else {
                continue;
            };
            let conversion = match e.get("type").and_then(Json::as_str) {
                Some("conversion") => true,
                Some("pageview" | "identify" | "event" | "consent") => false,
                _ => continue,
            };
            // Whatever the budget: another tab was told these were queued, and the write that
            // follows replaces the stored copy.
            if self.items.iter().any(|p| p.id == id) || self.acked.iter().any(|a| a == id) {
                continue;
            }
            self.items.push(Pending {
                conversion,
                id: String::from(id),
                body: e.to_text(),
                attempts: entry.get("a").and_then(Json::as_u64).unwrap_or(0).min(64) as u32,
                not_before: entry.get("n").and_then(Json::as_u64).unwrap_or(0),
                in_flight: false,
            });
            self.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    fn event(n: u32, conversion: bool) -> (String, String) {
        let id = format!("019ac0f1-2a00-7c3d-8e4f-{n:012x}");
        let body = if conversion {
            format!(
                r#"{{"id":"{id}","type":"conversion","at":1,"url":"https://s.example/","clicks":[],"order":{{"orderId":"O{n}"}}}}"#
            )
        } else {
            format!(r#"{{"id":"{id}","type":"pageview","at":1,"url":"https://s.example/","clicks":[]}}"#)
        };
        (id, body)
    }

    fn queue_of(kinds: &[bool]) -> Queue {
        let mut q = Queue::default();
        for (i, &c) in kinds.iter().enumerate() {
            let (id, body) = event(i as u32, c);
            q.push(id, body, c, 0);
        }
        q
    }

    #[test]
    fn a_full_queue_refuses_new_events_and_keeps_room_for_conversions() {
        let mut q = Queue::default();
        let (cid, cbody) = event(0, true);
        assert!(q.push(cid.clone(), cbody, true, 0));
        // Pushes events numbered from `*n` until one is refused; how many were kept.
        let fill = |q: &mut Queue, n: &mut u32, conversion: bool| {
            let mut kept = 0;
            loop {
                let (id, body) = event(*n, conversion);
                *n += 1;
                if !q.push(id, body, conversion, 0) {
                    return kept;
                }
                kept += 1;
            }
        };
        // Page views until their share is full: each is either kept or refused, never evicted.
        let mut n = 1;
        let kept = 1 + fill(&mut q, &mut n, false);
        assert_eq!(q.items().len(), kept, "nothing queued was pushed out");
        assert!(q.bytes() <= MAX_BYTES - CONVERSION_RESERVE);
        assert!(kept > 1_000, "a burst of a thousand ordinary events fits: {kept}");
        assert_eq!(q.items()[0].id, cid);
        // The reserve still takes conversions, until the whole budget is used.
        let conversions = fill(&mut q, &mut n, true);
        assert!(conversions > 1_000, "{conversions}");
        assert!(q.bytes() <= MAX_BYTES);
        assert!(
            q.bytes() + event(n, true).1.len() > MAX_BYTES,
            "refused only when it does not fit"
        );
        assert_eq!(q.items().len(), kept + conversions);
        // What another tab stored is taken in whatever the budget: it was told "queued".
        let mut other = Queue::default();
        other.merge_stored(&q.encode());
        let (id, body) = event(n, false);
        let mut late = Queue::default();
        late.push(id, body, false, 0);
        other.merge_stored(&late.encode());
        assert_eq!(other.items().len(), kept + conversions + 1);
    }

    #[test]
    fn batches_put_conversions_first_and_respect_limits() {
        let mut q = queue_of(&[false, true, false, true]);
        let ids = q.take(0).unwrap();
        assert_eq!(
            ids,
            [event(1, true).0, event(3, true).0, event(0, false).0, event(2, false).0]
        );
        assert_eq!(q.take(0), None, "everything is in flight");
        let mut q = queue_of(&[false; 250]);
        assert_eq!(q.items().len(), 250);
        assert_eq!(q.take(0).unwrap().len(), wire::limits::MAX_EVENTS);
        assert_eq!(q.take(0).unwrap().len(), wire::limits::MAX_EVENTS);
        assert_eq!(q.take(0).unwrap().len(), 50);
        // A big event is still sent alone rather than never.
        let mut q = Queue::default();
        q.push("big".to_string(), "x".repeat(MAX_BATCH_BYTES + 10), false, 0);
        assert_eq!(q.take(0).unwrap().len(), 1);
    }

    #[test]
    fn answers_settle_each_event() {
        let mut q = queue_of(&[false, true, false]);
        let ids = q.take(0).unwrap();
        let (a, b, c) = (event(0, false).0, event(1, true).0, event(2, false).0);
        let answer = format!(
            r#"{{"results":[{{"id":"{b}","status":"duplicate"}},{{"id":"{a}","status":"rejected","reason":"url: is required"}}]}}"#
        );
        let s = q.settle(&ids, 200, Some(&answer), None, 1000, 0);
        assert_eq!(s.delivered, 1);
        assert_eq!(s.dropped, [(a.clone(), "url: is required".to_string())]);
        assert_eq!(s.retrying, 1, "an event the answer does not mention is retried");
        assert_eq!(q.items().len(), 1);
        assert_eq!(q.items()[0].id, c);
        assert!(q.items()[0].not_before > 1000);
    }

    #[test]
    fn failures_retry_with_backoff_and_retry_after() {
        let table: &[(u16, Option<&str>, usize, usize)] = &[
            // status, Retry-After, left in queue, dropped
            (0, None, 2, 0),
            (500, None, 2, 0),
            (503, Some("120"), 2, 0),
            (429, Some("5"), 2, 0),
            (408, None, 2, 0),
            (400, None, 0, 2),
            (401, None, 0, 2),
            (413, None, 0, 2),
            (200, None, 2, 0), // a 200 without a readable answer stored nothing we can be sure of
            (204, None, 2, 0),
        ];
        for &(status, ra, left, dropped) in table {
            let mut q = queue_of(&[false, true]);
            let ids = q.take(10_000).unwrap();
            let s = q.settle(&ids, status, None, ra, 10_000, u32::MAX);
            assert_eq!((q.items().len(), s.dropped.len()), (left, dropped), "status {status}");
            if let Some(ra) = ra {
                let secs: u64 = ra.parse().unwrap();
                assert!(
                    q.items().iter().all(|p| p.not_before >= 10_000 + secs * 1000),
                    "{status}"
                );
            }
            if left > 0 {
                assert!(q
                    .items()
                    .iter()
                    .all(|p| !p.in_flight && p.attempts == 1 && p.not_before > 10_000));
                assert_eq!(q.take(10_000), None, "not due yet");
                q.hurry(10_000);
                assert_eq!(q.take(10_000).map(|v| v.len()), Some(2), "online again: due now");
            }
        }
    }

    #[test]
    fn stored_copies_merge_without_resurrecting_acknowledged_events() {
        let mut a = queue_of(&[false, true]);
        let stored = a.encode();
        // The same queue read back elsewhere (a reload, another tab).
        let mut b = Queue::default();
        b.merge_stored(&stored);
        assert_eq!(b.items(), a.items());
        // `a` delivers its first event; the stale stored copy must not bring it back.
        let first = [a.items()[0].id.clone()];
        a.take(0);
        let answer = format!(r#"{{"results":[{{"id":"{}","status":"accepted"}}]}}"#, first[0]);
        a.settle(&first, 200, Some(&answer), None, 0, 0);
        a.merge_stored(&stored);
        assert_eq!(a.items().len(), 1);
        // Tampered or foreign entries are ignored, never trusted.
        let mut c = Queue::default();
        for junk in [
            "",
            "{}",
            "[1,2]",
            r#"[{"e":{"id":"x"}}]"#,
            r#"[{"e":{"id":"<script>","type":"pageview"}}]"#,
        ] {
            c.merge_stored(junk);
        }
        assert!(c.items().is_empty());
    }

    #[test]
    fn beacon_takes_everything_within_limits() {
        let mut q = queue_of(&[false, true, false]);
        q.take(0);
        assert_eq!(
            q.for_beacon().len(),
            3,
            "in-flight events go too: the page is going away"
        );
        assert_eq!(q.for_beacon()[0], event(1, true).0);
    }
}
