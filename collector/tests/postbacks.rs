//! Signed partner postbacks, end to end: a receiver on 127.0.0.1 that verifies the signature
//! and honours the idempotency key, the collector's sender running against it. On both stores:
//! the receiver down during the conversion then back (delivered, once), an adjustment's own
//! postback, a 5xx retried, a 4xx failed at once, conversions of no partner or of a partner
//! without a postback sending nothing, the first report of an order deciding. Then a wrong
//! secret detected, a collector killed with SIGKILL while a delivery is pending (delivered after
//! the restart), two collectors on one PostgreSQL database delivering each postback once, and
//! the read API's refusals.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use common::*;
use hmac::{KeyInit, Mac};
use serde_json::Value;
use utt_collector::config::Config;
use utt_collector::postbacks::{send, Endpoint, Policy};
use utt_collector::store::PostbackKind;
use utt_collector::Shared;

const SERVER: &str = "server-secret-0123456789";
const READ: &str = "read-key-for-reports";
const SECRET: &str = "whsec_partner_anna_0123456789";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    key: String,
    signature: String,
    body: String,
    uri: String,
}

#[derive(Default)]
struct Seen {
    /// Every request, in order.
    hits: Vec<Got>,
    /// Deliveries taken: one per idempotency key.
    taken: Vec<Got>,
    /// Requests whose signature did not verify.
    rejected: Vec<Got>,
}

/// A partner's postback receiver: verifies `Utt-Signature` with its secret (401 when it does
/// not), takes each `Idempotency-Key` once (a repeat is answered 200 and not taken again).
/// Orders named `E404…` are refused 404; `E503…` answered 503 at their first request.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

/// Whether `header` (`t=…,v1=…`) signs `body` with `secret`, within 5 minutes of now: what
/// docs/collector.md tells receivers to do, written independently of the collector's code.
fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let Ok(secs) = t.parse::<u64>() else { return false };
    let now = utt_collector::http::system_clock() / 1000;
    if now.abs_diff(secs) > 300 {
        return false;
    }
    let Some(sig) = (0..v1.len())
        .step_by(2)
        .map(|i| v1.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&sig).is_ok()
}

async fn receive(
    State((secret, seen)): State<(String, Arc<Mutex<Seen>>)>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let got = Got {
        key: h("idempotency-key"),
        signature: h("utt-signature"),
        body,
        uri: uri.to_string(),
    };
    let mut s = seen.lock().unwrap();
    s.hits.push(got.clone());
    if !verify(&secret, &got.signature, &got.body) || h("content-type") != "application/json" {
        s.rejected.push(got);
        return (StatusCode::UNAUTHORIZED, "bad signature\n").into_response();
    }
    let order = serde_json::from_str::<Value>(&got.body).unwrap()["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    if order.starts_with("E404") {
        return (StatusCode::NOT_FOUND, "no such offer\n").into_response();
    }
    let tries = s.hits.iter().filter(|g| g.key == got.key).count();
    if order.starts_with("E503") && tries == 1 {
        return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")], "busy").into_response();
    }
    if !s.taken.iter().any(|g| g.key == got.key) {
        s.taken.push(got);
    }
    (StatusCode::OK, "ok").into_response()
}

impl Receiver {
    /// A receiver on `addr` (a port that was free a moment ago: tried until it binds).
    async fn on(addr: SocketAddr, secret: &str) -> Receiver {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("binding {addr} again: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("binding {addr}: {e}"),
            }
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = axum::Router::new()
            .fallback(receive)
            .with_state((secret.to_string(), seen.clone()));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, seen, task }
    }

    fn taken(&self) -> Vec<Got> {
        self.seen.lock().unwrap().taken.clone()
    }

    fn hits(&self) -> Vec<Got> {
        self.seen.lock().unwrap().hits.clone()
    }

    fn rejected(&self) -> Vec<Got> {
        self.seen.lock().unwrap().rejected.clone()
    }

    /// The deliveries taken for an order, by kind.
    fn bodies(&self, order: &str) -> Vec<Value> {
        self.taken()
            .iter()
            .map(|g| serde_json::from_str::<Value>(&g.body).unwrap())
            .filter(|v| v["orderId"] == order)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port on 127.0.0.1 with nothing listening on it (bound, then released).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Waits for `f` to give a value, checking every 10 ms, for at most 30 s.
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Short retries for the tests.
fn policy() -> Policy {
    Policy {
        initial_backoff_ms: 50,
        max_backoff_ms: 200,
        give_up_after_ms: 120_000,
        timeout_ms: 5_000,
        poll_ms: 20,
        sweep_ms: 300,
        max_in_flight: 4,
        // Short: orders credited to nobody are decided soon after they arrive.
        undecided_grace_ms: 200,
    }
}

/// The demo site with keys, `SPRING10` (→ influencer-anna) and the click `irclickid:PB1`
/// credited to Anna, and Anna's postback to `addr`.
fn config(addr: SocketAddr, secret: &str) -> Config {
    let mut c = unlimited();
    c.postbacks = policy();
    let s = &mut c.sites[0];
    s.server_key = Some(SERVER.into());
    s.read_key = Some(READ.into());
    s.partners
        .clicks
        .insert("irclickid:PB1".into(), "influencer-anna".into());
    s.postbacks = vec![Endpoint {
        partner: "influencer-anna".into(),
        url: format!("http://{addr}/pb?click={{clickId}}&order={{orderId}}&amount={{amount}}&kind={{kind}}"),
        secret: secret.into(),
        on: vec!["conversion".into(), "adjustment".into()],
    }];
    c.check().unwrap();
    c
}

async fn server(h: &Harness, path: &str, body: &str) -> Answer {
    h.post_json(path, SERVER, body).await
}

/// An order from the merchant's server, credited through `promo` or the click `PB1`.
fn order(id: &str, amount: &str, promo: Option<&str>, click: bool) -> String {
    let promo = promo.map_or(String::new(), |p| format!(r#","promoCode":"{p}""#));
    let click = if click {
        format!(r#","click":{{"clickId":"PB1","param":"irclickid","at":{}}}"#, T0 - DAY)
    } else {
        String::new()
    };
    format!(r#"{{"order":{{"orderId":"{id}","amount":"{amount}","currency":"EUR"{promo}}},"at":{T0}{click}}}"#)
}

async fn list(h: &Harness, query: &str) -> Vec<Value> {
    let auth = format!("Bearer {READ}");
    let a = h
        .send(
            "GET",
            &format!("/v1/postbacks?site=demo{query}"),
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["site"], "demo");
    assert_eq!(
        v["partners"],
        serde_json::json!(["influencer-anna"]),
        "the partners posted back to"
    );
    v["postbacks"].as_array().unwrap().clone()
}

/// The one delivery of an order and kind, once it has this status.
async fn settled(h: &Harness, order: &str, kind: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<Value> = list(h, &format!("&order={order}"))
            .await
            .into_iter()
            .filter(|r| r["kind"] == kind)
            .collect();
        assert!(rows.len() <= 1, "{rows:?}");
        if let Some(r) = rows.into_iter().find(|r| r["status"] == status) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {order} {kind} {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The first delivery of an order, once at least `attempts` attempts of it were recorded.
async fn tried(h: &Harness, order: &str, attempts: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = list(h, &format!("&order={order}")).await;
        if let Some(r) = rows.first().filter(|r| r["attempts"].as_u64() >= Some(attempts)) {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "not {attempts} attempts of {order}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn scenario(h: Harness, addr: SocketAddr) {
    let sender = send::start(&h.state).expect("a site has postbacks");
    let store = h.state.store.clone();
    let site = h.state.config.site("demo").unwrap().clone();

    // The receiver is down: the conversion is accepted, its postback stays pending and is
    // retried (connection refused), with the error shown.
    let a = server(&h, "/v1/conversions?site=demo", &order("A", "45.00", None, true)).await;
    assert_eq!(a.statuses(), ["accepted"]);
    let row = tried(&h, "A", 2).await;
    assert_eq!(row["status"], "pending", "{row}");
    assert_eq!(
        (row["kind"].as_str(), row["partner"].as_str()),
        (Some("conversion"), Some("influencer-anna"))
    );
    assert!(row["lastError"].as_str().unwrap().contains("onnect"), "{row}");
    assert!(
        row["nextAttemptAt"].as_u64().is_some() && row["deliveredAt"].is_null(),
        "{row}"
    );

    // Back up: delivered, once as the receiver sees it.
    let rx = Receiver::on(addr, SECRET).await;
    let row = settled(&h, "A", "conversion", "delivered").await;
    assert!(
        row["nextAttemptAt"].is_null() && row["deliveredAt"].as_u64().is_some(),
        "{row}"
    );
    let got = rx.taken();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].key, row["id"].as_str().unwrap());
    assert!(rx.rejected().is_empty());
    assert_eq!(got[0].uri, "/pb?click=PB1&order=A&amount=45.00&kind=conversion");
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["deliveryId"], row["id"]);
    assert_eq!(
        (
            &body["kind"],
            &body["site"],
            &body["partner"],
            &body["clickId"],
            &body["network"]
        ),
        (
            &"conversion".into(),
            &"demo".into(),
            &"influencer-anna".into(),
            &"PB1".into(),
            &"impact".into()
        )
    );
    assert_eq!(
        (&body["amount"], &body["currency"], &body["eventTime"]),
        (&"45.00".into(), &"EUR".into(), &T0.into())
    );
    assert_eq!(
        (&body["confirmed"], &body["adjustmentId"]),
        (&true.into(), &Value::Null)
    );

    // An adjustment of the order has its own postback: the change and the net after it.
    let refund = r#"{"adjustmentId":"RF-1","type":"refund","amount":"10.00","reason":"one item returned"}"#;
    let a = server(&h, "/v1/conversions/A/adjustments?site=demo", refund).await;
    assert_eq!(a.statuses(), ["accepted"]);
    let adj = settled(&h, "A", "adjustment", "delivered").await;
    assert_eq!(
        (adj["adjustmentId"].as_str(), adj["attempts"].as_u64()),
        (Some("RF-1"), Some(1))
    );
    let bodies = rx.bodies("A");
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let b = &bodies[1];
    assert_eq!(
        (
            &b["kind"],
            &b["adjustmentId"],
            &b["adjustmentType"],
            &b["amount"],
            &b["netAmount"]
        ),
        (
            &"adjustment".into(),
            &"RF-1".into(),
            &"refund".into(),
            &"-10.00".into(),
            &"35.00".into()
        )
    );
    assert_ne!(b["deliveryId"], body["deliveryId"]);

    // A browser conversion with Anna's promo code: posted back; the server's confirmation of
    // the same order later adds no second conversion postback (the first report decided).
    let a = h
        .post(&batch(&[event(
            1,
            Some("pia"),
            T0,
            vec![],
            conversion("P", Some("SPRING10")),
        )]))
        .await;
    assert_eq!(a.statuses(), ["accepted"]);
    settled(&h, "P", "conversion", "delivered").await;
    let a = server(
        &h,
        "/v1/conversions?site=demo",
        &order("P", "99.00", Some("SPRING10"), false),
    )
    .await;
    assert_eq!(a.statuses(), ["accepted"]);
    let decided = tokio::task::spawn_blocking({
        let (store, site) = (store.clone(), site.clone());
        move || utt_collector::postbacks::plan::conversion(store.as_ref(), &site, "P", T0, 0)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(decided.as_deref(), Some("influencer-anna"));
    let b = rx.bodies("P");
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(
        (&b[0]["amount"], &b[0]["confirmed"], &b[0]["clickId"]),
        (&"49.90".into(), &false.into(), &Value::Null)
    );

    // 503 then 200: retried (Retry-After: 0 honoured, the backoff still applies), delivered on
    // the second attempt. 404: failed at once with the answer.
    assert_eq!(
        server(
            &h,
            "/v1/conversions?site=demo",
            &order("E503-1", "5", Some("SPRING10"), false)
        )
        .await
        .statuses(),
        ["accepted"]
    );
    assert_eq!(
        server(
            &h,
            "/v1/conversions?site=demo",
            &order("E404-1", "5", Some("SPRING10"), false)
        )
        .await
        .statuses(),
        ["accepted"]
    );
    let r = settled(&h, "E503-1", "conversion", "delivered").await;
    assert_eq!(
        (r["attempts"].as_u64(), r["lastError"].as_str()),
        (Some(2), Some("HTTP 503: busy"))
    );
    let r = settled(&h, "E404-1", "conversion", "failed").await;
    assert_eq!(
        (r["attempts"].as_u64(), r["lastError"].as_str()),
        (Some(1), Some("HTTP 404: no such offer"))
    );
    assert!(r["nextAttemptAt"].is_null());

    // No partner, and a partner (WELCOME5's) without a postback: decided, nothing to send; the
    // adjustment of such an order neither.
    for (id, promo) in [("N", None), ("W", Some("WELCOME5"))] {
        assert_eq!(
            server(&h, "/v1/conversions?site=demo", &order(id, "7.00", promo, false))
                .await
                .statuses(),
            ["accepted"]
        );
    }
    let fix = r#"{"adjustmentId":"FX-W","type":"correction","amount":"6.00","reason":"price match"}"#;
    assert_eq!(
        server(&h, "/v1/conversions/W/adjustments?site=demo", fix)
            .await
            .statuses(),
        ["accepted"]
    );
    let decided = until("the decisions about N, W and FX-W", || {
        let n = store.planned("demo", PostbackKind::Conversion, "N", "").unwrap()?;
        let w = store.planned("demo", PostbackKind::Conversion, "W", "").unwrap()?;
        let fx = store.planned("demo", PostbackKind::Adjustment, "W", "FX-W").unwrap()?;
        Some((n, w, fx))
    })
    .await;
    assert_eq!(
        decided,
        (
            None,
            Some("newsletter-partner".into()),
            Some("newsletter-partner".into())
        )
    );
    assert!(list(&h, "&order=N").await.is_empty());
    assert!(list(&h, "&order=W").await.is_empty());

    // A crawler's browser conversion (no user agent: classed bot, which the site excludes) with
    // Anna's promo code: stored, but it earns no credit, so no postback either.
    let a = h
        .send(
            "POST",
            "/v1/events",
            &[("content-type", "text/plain;charset=UTF-8")],
            &batch(&[event(2, Some("bot"), T0, vec![], conversion("BOT", Some("SPRING10")))]),
        )
        .await;
    assert_eq!(a.statuses(), ["accepted"]);
    let decided = until("the decision about BOT", || {
        store.planned("demo", PostbackKind::Conversion, "BOT", "").unwrap()
    })
    .await;
    assert_eq!(decided, None, "a bot's conversion is credited to nobody");
    assert!(list(&h, "&order=BOT").await.is_empty());

    // The read API's filters; everything so far in planning order.
    let all = list(&h, "").await;
    let orders: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r["orderId"].as_str().unwrap(), r["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        orders,
        [
            ("A", "conversion"),
            ("A", "adjustment"),
            ("P", "conversion"),
            ("E503-1", "conversion"),
            ("E404-1", "conversion")
        ]
    );
    assert_eq!(list(&h, "&status=failed").await.len(), 1);
    assert_eq!(list(&h, "&status=delivered").await.len(), 4);
    assert_eq!(list(&h, "&status=pending").await.len(), 0);
    assert_eq!(list(&h, "&limit=2").await.len(), 2);
    let last = all.last().unwrap()["createdAt"].as_u64().unwrap();
    assert!(list(&h, &format!("&since={}", last + 1)).await.is_empty());

    // Every key was taken once; the receiver never saw a request it could not verify.
    let hits = rx.hits();
    let keys: std::collections::HashSet<&str> = hits.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys.len(), 5, "{hits:?}");
    assert_eq!(hits.len(), 6, "E503-1 twice, the others once: {hits:?}");
    // Attempts are counted once recorded.
    let want = [
        "utt_postback_attempts_total{outcome=\"delivered\"} 4\n",
        "utt_postback_attempts_total{outcome=\"retry\"} ",
        "utt_postback_attempts_total{outcome=\"failed\"} 1\n",
        "utt_postbacks_pending 0\n",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = h.send("GET", "/metrics", &[], "").await.body;
        if want.iter().all(|line| metrics.contains(line)) {
            break;
        }
        assert!(Instant::now() < deadline, "{want:?} not all in\n{metrics}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sender.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postbacks_on_sqlite() {
    let addr = free_port();
    scenario(Harness::with_config(config(addr, SECRET)), addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postbacks_on_postgres() {
    let addr = free_port();
    scenario(Harness::postgres_with(config(addr, SECRET)), addr).await;
}

/// The merchant's server confirms an order without cookie or click first (credited to nobody),
/// then the browser's conversion arrives, its visitor carrying Anna's click: within the grace
/// the "nobody" is not stored, so the browser's report decides, and Anna gets her postback.
async fn server_first_then_browser_click(h: Harness, addr: SocketAddr) {
    let rx = Receiver::on(addr, SECRET).await;
    let sender = send::start(&h.state).expect("a site has postbacks");
    let store = h.state.store.clone();
    let a = server(&h, "/v1/conversions?site=demo", &order("G", "30.00", None, false)).await;
    assert_eq!(a.statuses(), ["accepted"]);
    let clicked = vec![click("irclickid", "impact", "PB1", T0 - DAY)];
    let a = h
        .post(&batch(&[
            event(11, Some("gus"), T0 - DAY, clicked, pageview()),
            event(12, Some("gus"), T0, vec![], conversion("G", None)),
        ]))
        .await;
    assert_eq!(a.statuses(), ["accepted", "accepted"]);
    let decided = until("the decision about G", || {
        store.planned("demo", PostbackKind::Conversion, "G", "").unwrap()
    })
    .await;
    assert_eq!(decided.as_deref(), Some("influencer-anna"));
    settled(&h, "G", "conversion", "delivered").await;
    let b = rx.bodies("G");
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!((&b[0]["clickId"], &b[0]["confirmed"]), (&"PB1".into(), &true.into()));
    sender.stop(Duration::from_secs(5)).await;
}

fn with_grace(addr: SocketAddr) -> Config {
    let mut c = config(addr, SECRET);
    c.postbacks.undecided_grace_ms = 600_000;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_click_after_a_bare_confirmation_is_posted_back_on_sqlite() {
    let addr = free_port();
    server_first_then_browser_click(Harness::with_config(with_grace(addr)), addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_click_after_a_bare_confirmation_is_posted_back_on_postgres() {
    let addr = free_port();
    server_first_then_browser_click(Harness::postgres_with(with_grace(addr)), addr).await;
}

/// Deliveries this collector has no configuration for (another collector's, during a rolling
/// configuration change on one database): a partner without a postback here is retried, not
/// failed; a site without postbacks here is not even claimed.
async fn unconfigured_deliveries_are_left(h: Harness) {
    use utt_collector::store::{Delivery, Plan, PostbackQuery};
    let store = h.state.store.clone();
    let now = utt_collector::http::system_clock();
    for (site, partner) in [("demo", "bob"), ("elsewhere", "influencer-anna")] {
        let plan = Plan {
            site: site.into(),
            kind: PostbackKind::Conversion,
            order_id: "U".into(),
            adjustment_id: String::new(),
            partner: Some(partner.into()),
            planned_at: now,
        };
        let d = Delivery {
            site: site.into(),
            id: format!("{site}-U"),
            kind: PostbackKind::Conversion,
            order_id: "U".into(),
            adjustment_id: None,
            partner: partner.into(),
            // A newer collector's body, with a field this one does not know.
            body: format!(
                r#"{{"deliveryId":"{site}-U","kind":"conversion","site":"{site}","orderId":"U","adjustmentId":null,"partner":"{partner}","network":null,"clickId":null,"amount":"1.00","currency":"EUR","eventTime":{T0},"confirmed":true,"adjustmentType":null,"netAmount":null,"futureField":1}}"#
            ),
            created_at: now,
        };
        assert!(store.plan_postback(&plan, Some(&d)).unwrap());
    }
    let sender = send::start(&h.state).expect("a site has postbacks");
    let row = tried(&h, "U", 2).await;
    assert_eq!(row["status"], "pending", "{row}");
    assert!(
        row["lastError"].as_str().unwrap().contains("no postback configured"),
        "{row}"
    );
    let q = PostbackQuery {
        limit: 10,
        ..PostbackQuery::default()
    };
    let other = store.postbacks("elsewhere", &q).unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(
        other[0].attempts, 0,
        "another site's delivery is not claimed: {other:?}"
    );
    assert_eq!(other[0].next_at, Some(now), "nor leased: {other:?}");
    sender.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_deliveries_are_left_on_sqlite() {
    unconfigured_deliveries_are_left(Harness::with_config(config(free_port(), SECRET))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_deliveries_are_left_on_postgres() {
    unconfigured_deliveries_are_left(Harness::postgres_with(config(free_port(), SECRET))).await;
}

/// A receiver that answers 200 and then stalls its body (a proxy holding the connection): the
/// delivery counts as delivered on the status, at the first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_whose_body_stalls_is_delivered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stalled = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 65_536];
            let _ = s.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nok";
            s.write_all(head.as_bytes()).await.unwrap();
            held.push(s);
        }
    });
    let mut c = config(addr, SECRET);
    c.postbacks.timeout_ms = 300;
    let h = Harness::with_config(c);
    let sender = send::start(&h.state).expect("a site has postbacks");
    let a = server(
        &h,
        "/v1/conversions?site=demo",
        &order("S", "5", Some("SPRING10"), false),
    )
    .await;
    assert_eq!(a.statuses(), ["accepted"]);
    let row = tried(&h, "S", 1).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_u64()),
        (Some("delivered"), Some(1)),
        "{row}"
    );
    sender.stop(Duration::from_secs(5)).await;
    stalled.abort();
}

/// A receiver holding another secret refuses the delivery (401: failed, with the answer), and
/// what it got verifies with the right secret only, and only untampered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signature_is_detected() {
    let rx = Receiver::on(free_port(), "whsec_some_other_secret_000").await;
    let h = Harness::with_config(config(rx.addr, SECRET));
    let sender = send::start(&h.state).unwrap();
    let a = server(&h, "/v1/conversions?site=demo", &order("A", "45.00", None, true)).await;
    assert_eq!(a.statuses(), ["accepted"]);
    let r = settled(&h, "A", "conversion", "failed").await;
    assert_eq!(r["lastError"], "HTTP 401: bad signature");
    assert!(rx.taken().is_empty());
    let got = rx.rejected();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert!(verify(SECRET, &g.signature, &g.body));
    assert!(!verify("whsec_some_other_secret_000", &g.signature, &g.body));
    let tampered = g.body.replace("45.00", "99.00");
    assert_ne!(tampered, g.body);
    assert!(!verify(SECRET, &g.signature, &tampered));
    // A replayed signature with another timestamp fails too.
    let (t, v1) = g.signature.split_once(',').unwrap();
    let t: u64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    assert!(!verify(SECRET, &format!("t={},{v1}", t + 1), &g.body));
    sender.stop(Duration::from_secs(5)).await;
}

/// An `https://` postback is spoken TLS to (rustls): a plain-HTTP server on that port cannot
/// answer it, and the attempt fails in the handshake (retried, as a network error is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_urls_are_sent_over_tls() {
    let rx = Receiver::on(free_port(), SECRET).await;
    let mut c = config(rx.addr, SECRET);
    let e = &mut c.sites[0].postbacks[0];
    e.url = e.url.replace("http://", "https://");
    let h = Harness::with_config(c);
    let sender = send::start(&h.state).unwrap();
    let a = server(&h, "/v1/conversions?site=demo", &order("T", "1.00", None, true)).await;
    assert_eq!(a.statuses(), ["accepted"]);
    let row = tried(&h, "T", 1).await;
    assert_eq!(row["status"], "pending", "{row}");
    let error = row["lastError"].as_str().unwrap();
    // rustls read the plain-HTTP server's "HTTP/1.1 400" where a TLS record should be.
    assert!(error.contains("InvalidContentType"), "{error}");
    assert!(rx.taken().is_empty() && rx.hits().is_empty(), "{:?}", rx.hits());
    sender.stop(Duration::from_secs(5)).await;
}

/// The config file of a collector process posting back to `addr`.
fn config_toml(dir: &TempDir, addr: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("utt.toml");
    let text = format!(
        r#"
[rate_limit]
per_second = 0
burst = 0

[postbacks]
initial_backoff_ms = 50
max_backoff_ms = 200
timeout_ms = 5000
poll_ms = 20
sweep_ms = 300

[[sites]]
id = "demo"
allowed_origins = ["http://localhost:*"]
server_key = "{SERVER}"
[sites.promo_codes]
SPRING10 = "influencer-anna"

[[sites.postbacks]]
partner = "influencer-anna"
url = "http://{addr}/pb/{{orderId}}"
secret = "{SECRET}"
on = ["conversion"]
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The collector process killed with SIGKILL while a delivery is pending (the receiver down):
/// restarted on the same database, it delivers it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_survives_kill_9() {
    let dir = TempDir::new("pb-crash");
    let db = dir.join("utt.db");
    let addr = free_port();
    let config = config_toml(&dir, addr);
    let (mut child, at) = spawn_collector(&db, &config);
    let c = Remote::new(at);
    let body = order("K-1", "12.50", Some("SPRING10"), false);
    let req = hyper::Request::post(format!("http://{at}/v1/conversions?site=demo"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {SERVER}"))
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .unwrap();
    let a = c.send(req).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    // Wait until an attempt failed (the receiver is down): the delivery is planned and pending.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = c.get("/v1/postbacks?site=demo").await.unwrap();
        let v: Value = serde_json::from_str(&a.body).unwrap();
        let rows = v["postbacks"].as_array().unwrap();
        if rows.first().is_some_and(|r| r["attempts"].as_u64() >= Some(1)) {
            assert_eq!(rows[0]["status"], "pending", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "no attempt: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL: no shutdown code runs.
    child.wait().unwrap();

    let rx = Receiver::on(addr, SECRET).await;
    let (mut child, at) = spawn_collector(&db, &config);
    let c = Remote::new(at);
    let deadline = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let a = c.get("/v1/postbacks?site=demo&status=delivered").await.unwrap();
        let v: Value = serde_json::from_str(&a.body).unwrap();
        if let Some(r) = v["postbacks"].as_array().unwrap().first() {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "not delivered after the restart: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(row["orderId"], "K-1");
    let hits = rx.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (hits[0].key.as_str(), hits[0].uri.as_str()),
        (row["id"].as_str().unwrap(), "/pb/K-1")
    );
    assert_eq!(rx.taken().len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Two collectors on one PostgreSQL database, each planning (hints and sweeps) and sending:
/// every conversion, whichever collector received it, is delivered by exactly one request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_one_database_deliver_once() {
    let rx = Receiver::on(free_port(), SECRET).await;
    let url = common::pg::database("pb2");
    let config = config(rx.addr, SECRET);
    let mut harnesses = Vec::new();
    for _ in 0..2 {
        let store = utt_collector::store::postgres::PostgresStore::open(&url).unwrap();
        harnesses.push(Harness {
            dir: TempDir::new("pb2"),
            state: Shared::new(config.clone(), Arc::new(store), Vec::new()),
        });
    }
    let senders: Vec<_> = harnesses.iter().map(|h| send::start(&h.state).unwrap()).collect();
    let n = 20;
    for i in 0..n {
        let h = &harnesses[i % 2];
        let a = server(
            h,
            "/v1/conversions?site=demo",
            &order(&format!("M-{i}"), "3.00", Some("SPRING10"), false),
        )
        .await;
        assert_eq!(a.statuses(), ["accepted"]);
    }
    until("every delivery taken", || (rx.taken().len() >= n).then_some(())).await;
    // Each attempt is recorded after its answer: wait for the last of them.
    let deadline = Instant::now() + Duration::from_secs(30);
    for h in &harnesses {
        loop {
            let rows = list(h, "&status=delivered").await;
            if rows.len() == n {
                assert!(rows.iter().all(|r| r["attempts"] == 1), "{rows:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{} of {n} delivered", rows.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let hits = rx.hits();
    assert_eq!(hits.len(), n, "a delivery was sent twice: {hits:?}");
    for s in senders {
        s.stop(Duration::from_secs(5)).await;
    }
}

/// `GET /v1/postbacks` refuses as the other read endpoints do.
#[tokio::test]
async fn the_read_api_refuses_bad_requests() {
    let h = Harness::with_config(config(free_port(), SECRET));
    let auth = format!("Bearer {READ}");
    let cases: [(&str, Option<&str>, u16, &str); 9] = [
        ("/v1/postbacks", Some(&auth), 400, "site"),
        ("/v1/postbacks?site=nope", Some(&auth), 404, "site"),
        ("/v1/postbacks?site=demo", None, 401, "authorization"),
        ("/v1/postbacks?site=demo", Some("Bearer wrong"), 401, "authorization"),
        ("/v1/postbacks?site=demo&status=sent", Some(&auth), 400, "status"),
        ("/v1/postbacks?site=demo&limit=0", Some(&auth), 400, "limit"),
        ("/v1/postbacks?site=demo&since=yesterday", Some(&auth), 400, "since"),
        ("/v1/postbacks?site=demo&order=", Some(&auth), 400, "order"),
        ("/v1/postbacks?site=demo&state=pending", Some(&auth), 400, "state"),
    ];
    for (uri, key, status, field) in cases {
        let headers: Vec<(&str, &str)> = key.map(|k| ("authorization", k)).into_iter().collect();
        let a = h.send("GET", uri, &headers, "").await;
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(
            (a.status.as_u16(), v["field"].as_str()),
            (status, Some(field)),
            "{uri}: {}",
            a.body
        );
    }
    let a = h
        .send("POST", "/v1/postbacks?site=demo", &[("authorization", &auth)], "")
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}
