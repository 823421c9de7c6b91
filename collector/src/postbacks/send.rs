//! The sender: one task per collector that plans what handlers hinted (and, every `sweep_ms`,
//! whatever has no decision yet), claims due deliveries from the outbox and POSTs them, at most
//! `max_in_flight` at once, recording every attempt.
//!
//! An attempt: `POST <url>` with the frozen JSON body, `Content-Type: application/json`,
//! `Idempotency-Key: <delivery ID>` (the same on every attempt) and `Utt-Signature: t=<unix
//! seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. Redirects are not followed.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::{expand, plan, signature, Payload, Policy};
use crate::http::AppState;
use crate::store::{Attempted, PostbackRow};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The most hints planned between two claims.
const HINTS_AT_ONCE: usize = 32;

/// The most of an answer's body kept in a delivery's `lastError`.
const SNIPPET: usize = 200;

/// The longest wait for an answer's body after its head (for its snippet only).
const BODY_WAIT_MS: u64 = 2_000;

/// The sender's client: HTTP/1.1 over TCP or TLS (rustls, Mozilla's roots), pooled.
fn client() -> Client<Https, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}

/// What an answer (or its absence) makes of an attempt, `failed` attempts counting this one.
pub fn judge(
    policy: &Policy,
    row: &PostbackRow,
    answer: Result<(u16, Option<u64>, String), String>,
    now: u64,
) -> Attempted {
    let failed = row.attempts + 1;
    let (error, retry_after_s) = match answer {
        Ok((status, _, _)) if (200..300).contains(&status) => return Attempted::Delivered(now),
        Ok((status, retry_after, body)) if matches!(status, 408 | 425 | 429) || status >= 500 => {
            (answer_error(status, &body), retry_after)
        }
        Ok((status, _, body)) => return Attempted::Failed(answer_error(status, &body)),
        Err(e) => (e, None),
    };
    let backoff = policy.backoff_ms(failed, &row.delivery.id);
    // Retry-After is honoured, up to the longest backoff.
    let wait = retry_after_s.map_or(backoff, |s| {
        backoff
            .max(s.saturating_mul(1000))
            .min(policy.max_backoff_ms.max(backoff))
    });
    let next_at = now.saturating_add(wait);
    if next_at > row.delivery.created_at.saturating_add(policy.give_up_after_ms) {
        return Attempted::Failed(format!(
            "{error} (gave up after {failed} attempts: {} ms since it was planned)",
            now.saturating_sub(row.delivery.created_at)
        ));
    }
    Attempted::Retry { error, next_at }
}

fn answer_error(status: u16, body: &str) -> String {
    let mut end = body.len().min(SNIPPET);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let snippet: String = body[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("HTTP {status}: {}", snippet.trim())
}

/// One attempt: the answer's status, `Retry-After` in seconds, and the start of its body; or
/// why there was none (a connection refused, a timeout…).
async fn attempt(
    client: &Client<Https, Full<Bytes>>,
    state: &AppState,
    row: &PostbackRow,
) -> Result<Result<(u16, Option<u64>, String), String>, String> {
    let d = &row.delivery;
    let site = state.config.site(&d.site).ok_or("the site is no longer configured")?;
    let endpoint = site
        .postback(&d.partner)
        .ok_or_else(|| format!("partner {:?} has no postback configured any more", d.partner))?;
    let payload: Payload = serde_json::from_str(&d.body).map_err(|e| format!("stored body: {e}"))?;
    let url = expand(&endpoint.url, &payload)?;
    let t = (state.clock)() / 1000;
    let req = hyper::Request::post(&url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("utt-collector/", env!("CARGO_PKG_VERSION")),
        )
        .header("idempotency-key", &d.id)
        .header("utt-signature", signature(&endpoint.secret, t, &d.body))
        .body(Full::new(Bytes::from(d.body.clone())))
        .map_err(|e| format!("the URL {url:?} is not valid: {e}"))?;
    let policy = state.config.postbacks;
    let send = async {
        let resp = client.request(req).await.map_err(|e| {
            let mut why = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                why = format!("{why}: {s}");
                src = s.source();
            }
            why
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Ok::<_, String>((status, retry_after, resp.into_body()))
    };
    // The answer is its status, once the head arrived within the timeout.
    let (status, retry_after, body) = match tokio::time::timeout(Duration::from_millis(policy.timeout_ms), send).await {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => return Ok(Err(e)),
        Err(_) => return Ok(Err(format!("no answer within {} ms", policy.timeout_ms))),
    };
    // The start of the body is enough for the error, read on a short wait of its own: a body
    // that stalls or breaks changes nothing about the answer.
    let wait = Duration::from_millis(policy.timeout_ms.min(BODY_WAIT_MS));
    let text = match tokio::time::timeout(wait, Limited::new(body, 4096).collect()).await {
        Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        _ => String::new(),
    };
    Ok(Ok((status, retry_after, text)))
}

/// Sends one claimed delivery and records the attempt.
async fn deliver(client: Client<Https, Full<Bytes>>, state: AppState, row: PostbackRow) {
    let now_after = |s: &AppState| (s.clock)();
    let outcome = match attempt(&client, &state, &row).await {
        Ok(answer) => judge(&state.config.postbacks, &row, answer, now_after(&state)),
        // Nothing was sent: this collector's configuration does not allow it (an older or newer
        // one during a rolling change may): retried like no answer, until the give-up age.
        Err(why) => judge(&state.config.postbacks, &row, Err(why), now_after(&state)),
    };
    let label = match &outcome {
        Attempted::Delivered(_) => "delivered",
        Attempted::Retry { .. } => "retry",
        Attempted::Failed(_) => "failed",
    };
    match &outcome {
        Attempted::Delivered(_) => {
            tracing::debug!(id = %row.delivery.id, partner = %row.delivery.partner, "postback delivered")
        }
        Attempted::Retry { error, .. } => {
            tracing::info!(id = %row.delivery.id, partner = %row.delivery.partner, %error, "postback failed, will retry")
        }
        Attempted::Failed(error) => {
            tracing::warn!(id = %row.delivery.id, partner = %row.delivery.partner, %error, "postback failed for good")
        }
    }
    let store = state.store.clone();
    let (site, id) = (row.delivery.site.clone(), row.delivery.id.clone());
    // The lease this collector claimed it under fences the record: after it ran out, another
    // collector may have claimed and sent it, and its outcome stands.
    let lease = row.next_at.unwrap_or_default();
    let recorded = tokio::task::spawn_blocking(move || store.attempted(&site, &id, lease, &outcome)).await;
    match recorded {
        Ok(Ok(true)) => state.metrics.postback(label),
        Ok(Ok(false)) => {
            tracing::info!(id = %row.delivery.id, "a postback attempt's outcome came after its lease ran out: not recorded")
        }
        // Not recorded: the lease runs out and the delivery is sent again (the receiver sees
        // the same Idempotency-Key).
        Ok(Err(e)) => tracing::warn!(error = %e, id = %row.delivery.id, "recording a postback attempt"),
        Err(e) => tracing::warn!(error = %e, "recording a postback attempt"),
    }
    state.postbacks.wake.notify_one();
}

/// A running sender; [`Sender::stop`] ends it.
pub struct Sender {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sender {
    /// Stops planning and claiming, waits at most `grace` for the attempts in flight, and
    /// abandons the rest (their leases run out, and they are sent again, with the same key).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Starts the sender on the current runtime, when some site has postbacks (`None` otherwise).
pub fn start(state: &AppState) -> Option<Sender> {
    if state.postbacks.sites().is_empty() {
        return None;
    }
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(state.clone(), stopped));
    Some(Sender { stop, task })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

async fn run(state: AppState, mut stopped: watch::Receiver<bool>) {
    let policy = state.config.postbacks;
    let client = client();
    let slots = Arc::new(Semaphore::new(policy.max_in_flight));
    let mut sending = JoinSet::new();
    // The first sweep runs at once: what a stopped collector left undecided. A sweep goes a
    // slice at a time too, one per turn, until a turn finds nothing more to decide.
    let mut next_sweep = 0u64;
    let mut sweeping = false;
    loop {
        if *stopped.borrow() {
            break;
        }
        let now = (state.clock)();
        // A burst of orders is planned a slice at a time, with claims and sends in between,
        // so the first postbacks go out while the rest are being decided.
        let hints = state.postbacks.take(HINTS_AT_ONCE);
        if now >= next_sweep {
            next_sweep = now + policy.sweep_ms;
            sweeping = true;
        }
        if !hints.is_empty() || sweeping {
            let s = state.clone();
            let sweep = sweeping;
            sweeping = blocking(move || plan_all(&s, hints, sweep, now)).await.unwrap_or(false);
            if sweeping {
                state.postbacks.wake.notify_one();
            }
        }
        while sending.try_join_next().is_some() {}
        let free = slots.available_permits();
        if free > 0 {
            let s = state.clone();
            // Planning may have taken a while: the claim and its lease count from now.
            let now = (state.clock)();
            let lease = now + policy.lease_ms();
            let claimed = blocking(move || {
                let claim = crate::store::Claim {
                    sites: s.postbacks.sites(),
                    now,
                    lease_until: lease,
                    limit: free,
                };
                s.store.claim_postbacks(&claim)
            })
            .await;
            match claimed {
                Some(Ok(rows)) => {
                    for row in rows {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        let (c, s) = (client.clone(), state.clone());
                        sending.spawn(async move {
                            deliver(c, s, row).await;
                            drop(permit);
                        });
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "claiming due postbacks"),
                None => {}
            }
        }
        tokio::select! {
            _ = state.postbacks.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(policy.poll_ms)) => {}
            _ = stopped.changed() => {}
        }
    }
    // Attempts in flight may finish and be recorded while the stop waits for them.
    while sending.join_next().await.is_some() {}
}

/// The most undecided orders and adjustments a sweep decides about per site and turn.
const SWEEP_AT_ONCE: usize = 64;

/// Plans the hinted conversions and adjustments and, when `sweep`, a slice of what is undecided
/// and arrived within the give-up age; returns whether the sweep has more to do. A failure is
/// logged; the next sweep tries again.
fn plan_all(state: &AppState, hints: Vec<super::Hint>, sweep: bool, now: u64) -> bool {
    let store = state.store.as_ref();
    let grace = state.config.postbacks.undecided_grace_ms;
    for h in hints {
        let Some(site) = state.config.site(&h.site) else {
            continue;
        };
        let u = crate::store::Unplanned {
            kind: h.kind,
            order_id: h.order_id,
            adjustment_id: h.adjustment_id,
        };
        if let Err(e) = plan::one(store, site, &u, now, grace) {
            tracing::warn!(error = %e, site = %site.id, order = %u.order_id, "planning a postback (the sweep tries again)");
        }
    }
    let mut more = false;
    if sweep {
        let since = now.saturating_sub(state.config.postbacks.give_up_after_ms);
        for id in state.postbacks.sites() {
            let Some(site) = state.config.site(id) else { continue };
            match plan::sweep(store, site, since, now, grace, SWEEP_AT_ONCE) {
                Ok((0, _)) => {}
                Ok((n, rest)) => {
                    more |= rest;
                    tracing::info!(site = %id, decided = n, "postbacks: decided about orders found undecided")
                }
                Err(e) => tracing::warn!(error = %e, site = %id, "postbacks: sweeping undecided orders"),
            }
        }
    }
    more
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Delivery, PostbackKind, PostbackStatus};

    fn row(attempts: u32, created_at: u64) -> PostbackRow {
        PostbackRow {
            delivery: Delivery {
                site: "shop".into(),
                id: "d1".into(),
                kind: PostbackKind::Conversion,
                order_id: "A".into(),
                adjustment_id: None,
                partner: "anna".into(),
                body: "{}".into(),
                created_at,
            },
            status: PostbackStatus::Pending,
            attempts,
            last_error: None,
            next_at: Some(created_at),
            delivered_at: None,
        }
    }

    #[test]
    fn answers_are_judged() {
        let p = Policy {
            initial_backoff_ms: 1_000,
            max_backoff_ms: 8_000,
            give_up_after_ms: 60_000,
            ..Policy::default()
        };
        let now = 10_000;
        let r = row(0, 0);
        let answer = |status: u16, retry_after: Option<u64>, body: &str| Ok((status, retry_after, body.to_string()));
        for status in [200, 201, 204, 299] {
            assert_eq!(judge(&p, &r, answer(status, None, ""), now), Attempted::Delivered(now));
        }
        for status in [408, 425, 429, 500, 502, 503, 599] {
            match judge(&p, &r, answer(status, None, "busy\nnow"), now) {
                Attempted::Retry { error, next_at } => {
                    assert_eq!(error, format!("HTTP {status}: busy now"));
                    assert!((now + 500..=now + 1_000).contains(&next_at), "{status}: {next_at}");
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        for status in [301, 400, 401, 403, 404, 410, 422] {
            let long = "x".repeat(500);
            match judge(&p, &r, answer(status, None, &long), now) {
                Attempted::Failed(e) => assert_eq!(e, format!("HTTP {status}: {}", "x".repeat(SNIPPET))),
                other => panic!("{status}: {other:?}"),
            }
        }
        // A network error or a timeout is retried; the wait doubles with the attempts made.
        match judge(&p, &row(2, 0), Err("connection refused".into()), now) {
            Attempted::Retry { error, next_at } => {
                assert_eq!(error, "connection refused");
                assert!((now + 2_000..=now + 4_000).contains(&next_at), "{next_at}");
            }
            other => panic!("{other:?}"),
        }
        // Retry-After is honoured up to the longest backoff.
        match judge(&p, &r, answer(429, Some(5), ""), now) {
            Attempted::Retry { next_at, .. } => assert_eq!(next_at, now + 5_000),
            other => panic!("{other:?}"),
        }
        match judge(&p, &r, answer(429, Some(3_600), ""), now) {
            Attempted::Retry { next_at, .. } => assert_eq!(next_at, now + 8_000),
            other => panic!("{other:?}"),
        }
        // Past the give-up age: failed, with the last error.
        match judge(&p, &row(9, 0), Err("connection refused".into()), 59_000) {
            Attempted::Failed(e) => assert!(e.starts_with("connection refused (gave up after 10 attempts"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
