//! The contract every store keeps, run against each: SQLite (a file in a temporary folder) and
//! PostgreSQL (a database of this test binary's throwaway server). Then what only PostgreSQL
//! has to show (a schema distributable by site, migrations run once, synchronous commits, the
//! derived tables rebuilt), that it answers every read as SQLite does for the same events, and
//! the move of a site's events from SQLite to PostgreSQL.

mod common;

use std::process::Command;

use common::*;
use utt::core::wire::{self, Event, Status};
use utt_collector::store::import::{import_sqlite, Imported};
use utt_collector::store::postgres::PostgresStore;
use utt_collector::store::sqlite::SqliteStore;
use utt_collector::store::{
    Adjusted, Adjustment, AdjustmentKind, Attempted, Batch, Claim, Delivery, Plan, PostbackKind, PostbackQuery,
    PostbackStatus, ServerOrder, Store, StoredConversion, Touch, Unplanned,
};
use utt_collector::traffic::{Exclude, Traffic};

/// A store of each kind, with what keeps it alive.
struct Opened {
    store: Box<dyn Store>,
    dir: TempDir,
}

fn sqlite() -> Opened {
    let dir = TempDir::new("contract");
    Opened {
        store: Box::new(SqliteStore::open(&dir.join("utt.db")).unwrap()),
        dir,
    }
}

fn postgres() -> Opened {
    Opened {
        store: Box::new(PostgresStore::open(&pg::database("contract")).unwrap()),
        dir: TempDir::new("contract"),
    }
}

/// Each contract test, once per store.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test] fn $name() { super::$name(super::sqlite().store.as_ref()) })*
        }
        mod on_postgres {
            $(#[test] fn $name() { super::$name(super::postgres().store.as_ref()) })*
        }
    };
}

contract!(
    statuses_by_event_and_by_order,
    bodies_read_back_exactly,
    conversions_in_time_order,
    derived_rows_answer_the_click_and_journey_reads,
    a_partly_duplicate_batch_derives_as_if_each_event_came_once,
    a_store_that_commits_passes_its_checks,
    server_confirmations_dedupe_with_browser_conversions_in_both_orders,
    flagged_traffic_is_stored_with_its_class_and_left_out_on_request,
    undecided_orders_are_found_oldest_first,
    a_late_outcome_after_a_reclaim_changes_nothing,
);

/// A collector whose lease ran out records its attempt late, after another collector claimed
/// the delivery again: the late outcome changes nothing (the lease is the fencing token), the
/// current holder's is recorded.
fn a_late_outcome_after_a_reclaim_changes_nothing(store: &dyn Store) {
    let plan = Plan {
        site: "demo".into(),
        kind: PostbackKind::Conversion,
        order_id: "F".into(),
        adjustment_id: String::new(),
        partner: Some("anna".into()),
        planned_at: T0,
    };
    let d = Delivery {
        site: "demo".into(),
        id: "d-F".into(),
        kind: PostbackKind::Conversion,
        order_id: "F".into(),
        adjustment_id: None,
        partner: "anna".into(),
        body: "{}".into(),
        created_at: T0,
    };
    assert!(store.plan_postback(&plan, Some(&d)).unwrap());
    let sites = ["demo".to_string()];
    let claim = |now: u64| {
        let c = Claim {
            sites: &sites,
            now,
            lease_until: now + 100,
            limit: 10,
        };
        store.claim_postbacks(&c).unwrap()
    };
    let first = claim(T0);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].next_at, Some(T0 + 100));
    assert!(claim(T0 + 50).is_empty(), "leased");
    let second = claim(T0 + 100);
    assert_eq!(second.len(), 1, "due again once the lease ran out");
    let failed = Attempted::Failed("HTTP 404: late".into());
    assert!(!store.attempted("demo", "d-F", T0 + 100, &failed).unwrap());
    let q = PostbackQuery {
        limit: 10,
        ..PostbackQuery::default()
    };
    let row = store.postbacks("demo", &q).unwrap().remove(0);
    assert_eq!(
        (row.status, row.attempts, row.next_at),
        (PostbackStatus::Pending, 0, Some(T0 + 200))
    );
    assert!(store
        .attempted("demo", "d-F", T0 + 200, &Attempted::Delivered(T0 + 150))
        .unwrap());
    let row = store.postbacks("demo", &q).unwrap().remove(0);
    assert_eq!((row.status, row.attempts), (PostbackStatus::Delivered, 1));
}

/// The planner's sweep finds the orders and adjustments without a decision oldest first (by
/// arrival: a confirmation's receipt, a browser conversion's time, an adjustment's receipt).
fn undecided_orders_are_found_oldest_first(store: &dyn Store) {
    store.confirm(&confirmation("LATE", "1.00", T0 + 30)).unwrap();
    store.confirm(&confirmation("EARLY", "1.00", T0 + 10)).unwrap();
    let browser = decode(&event(1, Some("anna"), T0 + 20, vec![], conversion("MID", None)));
    store.append(&[&Batch::new("demo", T0 + 20, vec![browser])]).unwrap();
    assert_eq!(store.adjust(&refund("EARLY", "R1")).unwrap(), Adjusted::Accepted);
    let found: Vec<(PostbackKind, String)> = store
        .unplanned("demo", T0, 10)
        .unwrap()
        .into_iter()
        .map(|u: Unplanned| (u.kind, u.order_id))
        .collect();
    let c = PostbackKind::Conversion;
    let want = [
        (c, "EARLY"),
        (c, "MID"),
        (c, "LATE"),
        (PostbackKind::Adjustment, "EARLY"),
    ];
    assert_eq!(found, want.map(|(k, o)| (k, o.to_string())));
}

/// A batch's traffic class is stored with its events: the conversions it sent and the touches it
/// derived carry it (a touch takes the least class of its sightings), and a read of conversions leaves out
/// the excluded classes, the limit counting only what is kept.
fn flagged_traffic_is_stored_with_its_class_and_left_out_on_request(store: &dyn Store) {
    let d = devices(8000);
    // The phone (the click's carrier) is an automated browser; the laptop that converts is not.
    store
        .append(&[&Batch::classified("demo", 1, d[..4].to_vec(), Traffic::Automation)])
        .unwrap();
    store.append(&[&Batch::new("demo", 2, d[4..].to_vec())]).unwrap();
    // A crawler converts later, carrying its own click.
    let bot = decode(&event(
        8100,
        Some("crawler"),
        T0 + 10,
        vec![click("irclickid", "impact", "I-BOT", T0 + 5)],
        conversion("O-BOT", None),
    ));
    store
        .append(&[&Batch::classified("demo", 3, vec![bot], Traffic::Bot)])
        .unwrap();
    let t = store.touches("demo", &visitor_id("laptop"), 0, T0).unwrap();
    assert_eq!(
        t.iter().map(|t| (t.value.as_str(), t.traffic)).collect::<Vec<_>>(),
        [("I1", Traffic::Automation)]
    );
    let t = store.touches("demo", &visitor_id("crawler"), 0, T0 + 10).unwrap();
    assert_eq!(
        t.iter().map(|t| (t.value.as_str(), t.traffic)).collect::<Vec<_>>(),
        [("I-BOT", Traffic::Bot)]
    );
    let orders = |exclude, limit| -> Vec<(String, Traffic)> {
        store
            .conversions("demo", 0, limit, exclude)
            .unwrap()
            .into_iter()
            .map(|c| (c.order_id, c.traffic))
            .collect()
    };
    let both = [
        ("O-LAPTOP".to_string(), Traffic::Human),
        ("O-BOT".to_string(), Traffic::Bot),
    ];
    assert_eq!(orders(Exclude::NONE, 10), both);
    assert_eq!(orders(Exclude::FLAGGED, 10), both[..1]);
    assert_eq!(orders(Exclude::of(&[Traffic::Automation]), 10), both);
    // The limit applies after the exclusion: a page of bots does not hide a later human.
    let first = orders(Exclude::of(&[Traffic::Human]), 1);
    assert_eq!(first, both[1..]);
    // The report's clicks leave out the excluded classes before the limit too.
    let clicks = |exclude, limit| -> Vec<(String, Traffic)> {
        store
            .clicks("demo", 0, T0 + 100, limit, exclude)
            .unwrap()
            .into_iter()
            .map(|t| (t.value, t.traffic))
            .collect()
    };
    let all = [
        ("I1".to_string(), Traffic::Automation),
        ("I-BOT".to_string(), Traffic::Bot),
    ];
    assert_eq!(clicks(Exclude::NONE, 10), all);
    assert_eq!(clicks(Exclude::FLAGGED, 10), []);
    assert_eq!(clicks(Exclude::of(&[Traffic::Automation]), 1), all[1..]);
    // The click read names each click's own class, read from its touches: the phone's click
    // an automated browser's, the crawler's a bot's (on every site and on its own).
    let class = |value: &str, site| store.click(value, site).unwrap().and_then(|c| c.traffic);
    assert_eq!(class("I1", Some("demo")), Some(Traffic::Automation));
    assert_eq!(class("I-BOT", Some("demo")), Some(Traffic::Bot));
    assert_eq!(class("I-BOT", None), Some(Traffic::Bot));
    // A click seen only by page views without a visitor ID left no touch: no class.
    let anonymous = decode(&event(
        8300,
        None,
        T0 + 20,
        vec![click("irclickid", "impact", "I-ANON", T0 + 20)],
        pageview(),
    ));
    store
        .append(&[&Batch::classified("demo", 5, vec![anonymous], Traffic::Bot)])
        .unwrap();
    let seen = store
        .click("I-ANON", Some("demo"))
        .unwrap()
        .expect("its page view is seen");
    assert_eq!((seen.pages.len(), seen.traffic), (1, None));
    let near = store.conversions_near_click("I-BOT", Some("demo"), 10).unwrap();
    assert_eq!(
        near.iter()
            .map(|c| (c.order_id.as_str(), c.traffic))
            .collect::<Vec<_>>(),
        [("O-BOT", Traffic::Bot)]
    );
    // The same touch seen again takes the least class (human < bot < automation), whatever
    // the order: from a bot it is a bot's, from a human browser it is human.
    let mut again = d[1].clone();
    for (n, sent) in [
        (8200, Traffic::Bot),
        (8201, Traffic::Automation),
        (8202, Traffic::Human),
    ] {
        again.id = uuid(n);
        again.at += 1;
        store
            .append(&[&Batch::classified("demo", 4, vec![again.clone()], sent)])
            .unwrap();
        let t = store.touches("demo", &visitor_id("phone"), 0, T0).unwrap();
        let want = if sent == Traffic::Human {
            Traffic::Human
        } else {
            Traffic::Bot
        };
        assert_eq!(t.iter().map(|t| t.traffic).collect::<Vec<_>>(), [want]);
        // The click is classed as its touches are: it has the phone's touch only.
        assert_eq!(class("I1", Some("demo")), Some(want));
    }
    // Another visitor's touch of the same click, on another site: each site's answer has its
    // own touches' least class, and the answer across sites the least of all.
    let mut elsewhere = d[0].clone();
    elsewhere.id = uuid(8400);
    store
        .append(&[&Batch::classified("other", 6, vec![elsewhere], Traffic::Automation)])
        .unwrap();
    assert_eq!(class("I1", Some("other")), Some(Traffic::Automation));
    assert_eq!(class("I1", Some("demo")), Some(Traffic::Human));
    assert_eq!(class("I1", None), Some(Traffic::Human));
    assert_eq!(clicks(Exclude::FLAGGED, 10), [("I1".to_string(), Traffic::Human)]);
}

/// A confirmation of an order by the merchant's server.
fn confirmation(order_id: &str, amount: &str, at: u64) -> ServerOrder {
    ServerOrder {
        conversion: StoredConversion {
            site: "demo".into(),
            event_id: String::new(),
            order_id: order_id.into(),
            at,
            visitor: None,
            amount: Some(amount.into()),
            currency: Some("EUR".into()),
            discount: None,
            promo_code: None,
            customer_status: None,
            items: "[]".into(),
            custom: None,
            traffic: Traffic::Human,
        },
        received: at,
        clicks: vec![Touch {
            param: "irclickid".into(),
            network: "impact".into(),
            value: "S1".into(),
            at: at - DAY,
            path: String::new(),
            landing: "utm_source=partner".into(),
            cross_device: false,
            traffic: Traffic::Human,
        }],
    }
}

fn refund(order_id: &str, id: &str) -> Adjustment {
    Adjustment {
        site: "demo".into(),
        order_id: order_id.into(),
        adjustment_id: id.into(),
        kind: AdjustmentKind::Refund,
        amount: Some("5.00".into()),
        reason: "returned".into(),
        at: T0 + DAY,
        received: T0 + DAY,
    }
}

/// Browser first then server, and server first then browser: each order is one conversion
/// (kept side by side, merged when read), resends are duplicates, and adjustments need a known
/// order and are idempotent by their ID.
fn server_confirmations_dedupe_with_browser_conversions_in_both_orders(store: &dyn Store) {
    let browser = |n: u64, order: &str| decode(&event(n, Some("anna"), T0, vec![], conversion(order, None)));
    // Browser first.
    assert_eq!(
        store
            .append(&[&Batch::new("demo", T0, vec![browser(1, "B1")])])
            .unwrap(),
        [Status::Accepted]
    );
    assert_eq!(
        store.confirm(&confirmation("B1", "40.00", T0 + 5)).unwrap(),
        Status::Accepted
    );
    assert_eq!(
        store.confirm(&confirmation("B1", "1.00", T0 + 5)).unwrap(),
        Status::Duplicate
    );
    // Server first.
    assert_eq!(
        store.confirm(&confirmation("S1", "70.00", T0 + 9)).unwrap(),
        Status::Accepted
    );
    assert_eq!(store.server_only_orders("demo", 0, 10).unwrap().len(), 1);
    assert_eq!(
        store
            .append(&[&Batch::new("demo", T0, vec![browser(2, "S1")])])
            .unwrap(),
        [Status::Accepted]
    );
    // A server-only order.
    assert_eq!(
        store.confirm(&confirmation("O1", "9.5", T0 + 20)).unwrap(),
        Status::Accepted
    );
    // Each order once: the browser's two conversions, the server's confirmations beside them.
    let browser_orders: Vec<String> = store
        .conversions("demo", 0, 10, Exclude::NONE)
        .unwrap()
        .into_iter()
        .map(|c| c.order_id)
        .collect();
    assert_eq!(browser_orders, ["B1", "S1"]);
    let only: Vec<String> = store
        .server_only_orders("demo", 0, 10)
        .unwrap()
        .into_iter()
        .map(|o| o.conversion.order_id)
        .collect();
    assert_eq!(only, ["O1"]);
    let b1 = store.server_order("demo", "B1").unwrap().unwrap();
    assert_eq!(b1, confirmation("B1", "40.00", T0 + 5));
    assert_eq!(store.server_order("demo", "NONE").unwrap(), None);
    assert_eq!(store.server_order("other", "B1").unwrap(), None);
    // Adjustments.
    assert_eq!(store.adjust(&refund("B1", "R1")).unwrap(), Adjusted::Accepted);
    assert_eq!(store.adjust(&refund("B1", "R1")).unwrap(), Adjusted::Duplicate);
    assert_eq!(store.adjust(&refund("O1", "R2")).unwrap(), Adjusted::Accepted);
    assert_eq!(store.adjust(&refund("NONE", "R3")).unwrap(), Adjusted::UnknownOrder);
    assert_eq!(store.adjustments("demo", "B1").unwrap(), [refund("B1", "R1")]);
    assert_eq!(store.adjustments("demo", "NONE").unwrap(), []);
    let (orders, adjustments) = store.export_orders().unwrap();
    assert_eq!(orders.len(), 3);
    assert_eq!(adjustments.len(), 2);
}

/// The golden journey (site `demo`): a visitor with two clicks, a page view, a conversion, an
/// identify, and a conversion without a visitor.
fn journey() -> Vec<Event> {
    let text = std::fs::read_to_string(fixtures().join("batch-journey.json")).unwrap();
    let batch = wire::read_batch(&text).unwrap();
    batch.events.into_iter().map(|e| e.unwrap()).collect()
}

fn decode(text: &str) -> Event {
    wire::read_event(text).unwrap()
}

const EMAIL: &str = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d";

/// More events: two devices of one person linked by an email hash, one carrying an Impact
/// click, the other converting; page views on several paths, one without a visitor ID.
fn devices(from: u64) -> Vec<Event> {
    let i1 = || vec![click("irclickid", "impact", "I1", T0 - DAY)];
    let on = |n, v, at, clicks, kind, url: &str| decode(&event_on(from + n, v, at, clicks, kind, url, ""));
    vec![
        on(
            1,
            Some("phone"),
            T0 - DAY,
            i1(),
            pageview(),
            "https://shop.example/a?x=1",
        ),
        on(
            2,
            Some("phone"),
            T0 - DAY + 5,
            i1(),
            pageview(),
            "https://shop.example/b",
        ),
        on(
            3,
            Some("phone"),
            T0 - DAY + 9,
            i1(),
            identify(Some(EMAIL), None),
            "https://shop.example/b",
        ),
        on(4, None, T0 - DAY + 20, i1(), pageview(), "https://shop.example/c"),
        on(
            5,
            Some("laptop"),
            T0 - 10,
            vec![],
            identify(Some(EMAIL), Some("cust-7")),
            "https://shop.example/",
        ),
        on(
            6,
            Some("laptop"),
            T0,
            vec![],
            conversion("O-LAPTOP", Some("SPRING")),
            "https://shop.example/thanks",
        ),
    ]
}

fn statuses(store: &dyn Store, batches: &[&Batch]) -> Vec<Status> {
    store.append(batches).unwrap()
}

fn all(s: Status, n: usize) -> Vec<Status> {
    vec![s; n]
}

/// New events are accepted, the same again duplicates; a conversion with a stored order ID
/// under a new event ID is a duplicate and not stored, within a group too; an event repeated
/// within a group is stored once.
fn statuses_by_event_and_by_order(store: &dyn Store) {
    let events = journey();
    let n = events.len();
    let conversions = events
        .iter()
        .filter(|e| matches!(e.kind, wire::Kind::Conversion(_)))
        .count() as u64;
    assert_eq!(
        statuses(store, &[&Batch::new("demo", 1, events.clone())]),
        all(Status::Accepted, n)
    );
    assert_eq!(store.counts().unwrap().events, n as u64);
    assert_eq!(store.counts().unwrap().conversions, conversions);
    assert_eq!(
        statuses(store, &[&Batch::new("demo", 2, events.clone())]),
        all(Status::Duplicate, n)
    );
    // The journey's conversion again under a new event ID: the order is stored once.
    let mut again = events
        .iter()
        .find(|e| matches!(e.kind, wire::Kind::Conversion(_)))
        .unwrap()
        .clone();
    again.id = uuid(900);
    assert_eq!(
        statuses(store, &[&Batch::new("demo", 3, vec![again])]),
        [Status::Duplicate]
    );
    assert!(
        !store.has_event(&uuid(900)).unwrap(),
        "the duplicate order's event is not kept"
    );
    // In one group: the same new order under two event IDs, and the same new event twice.
    let d = devices(1000);
    let mut other = d[5].clone();
    other.id = uuid(901);
    let first = Batch::new("demo", 4, vec![d[5].clone(), d[0].clone()]);
    let second = Batch::new("demo", 4, vec![other, d[0].clone(), d[1].clone()]);
    assert_eq!(
        statuses(store, &[&first, &second]),
        [
            Status::Accepted,
            Status::Accepted,
            Status::Duplicate,
            Status::Duplicate,
            Status::Accepted
        ]
    );
    assert!(!store.has_event(&uuid(901)).unwrap());
    let c = store.counts().unwrap();
    assert_eq!((c.events, c.conversions), (n as u64 + 3, conversions + 1));
    // The same order ID on another site is another order.
    let mut elsewhere = d[5].clone();
    elsewhere.id = uuid(902);
    assert_eq!(
        statuses(store, &[&Batch::new("other", 5, vec![elsewhere])]),
        [Status::Accepted]
    );
}

/// Every stored event reads back as its exact canonical wire JSON; an unknown ID is `None`.
fn bodies_read_back_exactly(store: &dyn Store) {
    let mut events = journey();
    events.extend(devices(2000));
    store.append(&[&Batch::new("demo", 1, events.clone())]).unwrap();
    for e in &events {
        let mut want = String::new();
        wire::write_event(&mut want, e);
        assert_eq!(store.event(&e.id).unwrap(), Some(want), "{}", e.id);
        assert!(store.has_event(&e.id).unwrap());
    }
    assert_eq!(store.event(&uuid(77_777)).unwrap(), None);
}

/// A site's conversions since a time, oldest first, at most the limit; other sites' not.
fn conversions_in_time_order(store: &dyn Store) {
    let orders: Vec<Event> = (0..5u64)
        .map(|i| {
            decode(&event(
                3000 + i,
                Some("buyer"),
                T0 + (4 - i) * 1000,
                vec![],
                conversion(&format!("O{i}"), None),
            ))
        })
        .collect();
    store.append(&[&Batch::new("demo", 1, orders.clone())]).unwrap();
    let mut elsewhere = orders[0].clone();
    elsewhere.id = uuid(3100);
    store.append(&[&Batch::new("other", 1, vec![elsewhere])]).unwrap();
    let got = store.conversions("demo", 0, 100, Exclude::NONE).unwrap();
    let ids: Vec<&str> = got.iter().map(|c| c.order_id.as_str()).collect();
    assert_eq!(ids, ["O4", "O3", "O2", "O1", "O0"]);
    assert!(got.iter().all(|c| c.site == "demo"));
    let c = &got[4];
    assert_eq!(
        (c.amount.as_deref(), c.currency.as_deref(), c.at, c.items.as_str()),
        (Some("49.90"), Some("EUR"), T0 + 4000, "[]")
    );
    assert_eq!(c.visitor.as_deref(), Some(visitor_id("buyer").as_str()));
    let since: Vec<String> = store
        .conversions("demo", T0 + 2000, 2, Exclude::NONE)
        .unwrap()
        .into_iter()
        .map(|c| c.order_id)
        .collect();
    assert_eq!(since, ["O2", "O1"]);
    assert_eq!(store.conversions("other", 0, 10, Exclude::NONE).unwrap().len(), 1);
    assert!(store.conversions("nobody", 0, 10, Exclude::NONE).unwrap().is_empty());
}

/// Touches, identities and page counts answer the journey and click reads: the converting
/// device sees the click of the other device (cross-device), the click shows its landings and
/// its page views per path (those without a visitor ID too), and the conversion near it.
fn derived_rows_answer_the_click_and_journey_reads(store: &dyn Store) {
    let d = devices(4000);
    store.append(&[&Batch::new("demo", 1, d[..3].to_vec())]).unwrap();
    store.append(&[&Batch::new("demo", 2, d[3..].to_vec())]).unwrap();
    let laptop = visitor_id("laptop");
    let phone = visitor_id("phone");
    let t = store.touches("demo", &laptop, 0, T0).unwrap();
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(
        (t[0].value.as_str(), t[0].network.as_str(), t[0].at, t[0].cross_device),
        ("I1", "impact", T0 - DAY, true)
    );
    let own = store.touches("demo", &phone, 0, T0).unwrap();
    assert_eq!(own.len(), 1);
    assert!(!own[0].cross_device);
    assert!(store.touches("demo", &phone, 0, T0 - DAY - 1).unwrap().is_empty());
    assert!(store.touches("other", &laptop, 0, T0).unwrap().is_empty());

    let seen = store.click("I1", Some("demo")).unwrap().expect("the click is seen");
    assert_eq!((seen.first_seen, seen.last_seen), (T0 - DAY, T0 - DAY + 9));
    assert_eq!(seen.landings.len(), 1);
    assert_eq!(seen.landings[0].path, "/landing");
    let mut pages: Vec<(String, u64)> = seen.pages.iter().map(|p| (p.path.clone(), p.views)).collect();
    pages.sort();
    assert_eq!(
        pages,
        [("/a".to_string(), 1), ("/b".to_string(), 1), ("/c".to_string(), 1)]
    );
    assert_eq!(seen.pages[0].path, "/c", "the most recent page first");
    assert!(store.click("I1", Some("other")).unwrap().is_none());
    assert!(store.click("nothing", None).unwrap().is_none());
    let near = store.conversions_near_click("I1", None, 10).unwrap();
    assert_eq!(near.len(), 1);
    assert_eq!(near[0].order_id, "O-LAPTOP");

    // The report's clicks: the site's distinct clicks landed in [from, to).
    let at = |from: u64, to: u64| -> Vec<(String, u64)> {
        let c = store.clicks("demo", from, to, 10, Exclude::NONE).unwrap();
        c.into_iter().map(|t| (t.value, t.at)).collect()
    };
    assert_eq!(at(0, T0), [("I1".to_string(), T0 - DAY)]);
    assert_eq!(at(T0 - DAY, T0 - DAY + 1).len(), 1, "from is included");
    assert!(at(0, T0 - DAY).is_empty(), "to is excluded");
    assert!(at(T0 - DAY + 1, T0).is_empty());
    assert!(store.clicks("other", 0, T0, 10, Exclude::NONE).unwrap().is_empty());
}

/// A retried batch (some events already stored) adds the derived rows of its new events only.
fn a_partly_duplicate_batch_derives_as_if_each_event_came_once(store: &dyn Store) {
    let d = devices(5000);
    store.append(&[&Batch::new("demo", 1, d[..2].to_vec())]).unwrap();
    let s = statuses(store, &[&Batch::new("demo", 2, d.clone())]);
    assert_eq!(s[..2], [Status::Duplicate, Status::Duplicate]);
    let seen = store.click("I1", Some("demo")).unwrap().unwrap();
    let views: u64 = seen.pages.iter().map(|p| p.views).sum();
    assert_eq!(views, 3, "each page view counted once: {:?}", seen.pages);
    assert_eq!(store.touches("demo", &visitor_id("laptop"), 0, T0).unwrap().len(), 1);
}

/// A store that commits says so to `/healthz`'s check and probe.
fn a_store_that_commits_passes_its_checks(store: &dyn Store) {
    store.check().unwrap();
    store.probe().unwrap();
    store.probe().unwrap();
    store.append(&[&Batch::new("demo", 1, journey())]).unwrap();
    store.check().unwrap();
    assert!(store.size_bytes() > 0);
}

/// Every read the API makes, for every visitor, click and event of `events`, on each site.
fn answers(store: &dyn Store, events: &[(String, Event)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut sites: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
    sites.sort();
    sites.dedup();
    for site in &sites {
        out.push(format!(
            "{:?}",
            store.conversions(site, 0, 1000, Exclude::NONE).unwrap()
        ));
        out.push(format!(
            "{:?}",
            store.conversions(site, 0, 1000, Exclude::FLAGGED).unwrap()
        ));
        out.push(format!(
            "{:?}",
            store.clicks(site, 0, i64::MAX as u64, 1000, Exclude::NONE).unwrap()
        ));
        out.push(format!(
            "{:?}",
            store.clicks(site, 0, i64::MAX as u64, 2, Exclude::NONE).unwrap()
        ));
        out.push(format!(
            "{:?}",
            store.clicks(site, 0, i64::MAX as u64, 2, Exclude::FLAGGED).unwrap()
        ));
    }
    for (site, e) in events {
        out.push(format!("{:?}", store.event(&e.id).unwrap()));
        if let Some(v) = &e.visitor {
            out.push(format!("{:?}", store.touches(site, v, 0, i64::MAX as u64).unwrap()));
        }
        for c in &e.clicks {
            for s in [None, Some(site.as_str())] {
                out.push(format!("{:?}", store.click(&c.value, s).unwrap()));
                out.push(format!("{:?}", store.conversions_near_click(&c.value, s, 100).unwrap()));
            }
        }
    }
    out
}

/// The mixed traffic the cross-store tests store: the journey, two devices, the same people
/// later under new IDs on both sites, in several groups, some partly duplicate.
fn traffic() -> Vec<Vec<(String, Vec<Event>)>> {
    let later = |from| {
        let mut events = devices(from);
        for e in &mut events {
            e.at += 3 * DAY;
            if let wire::Kind::Conversion(o) = &mut e.kind {
                o.order_id.push_str("-2");
            }
        }
        events
    };
    let (here, there) = (later(6000), later(6200));
    let d = devices(6100);
    vec![
        vec![("demo".into(), journey())],
        vec![("demo".into(), d[..3].to_vec()), ("other".into(), there.clone())],
        vec![("demo".into(), d.clone())],
        vec![("demo".into(), here.clone()), ("other".into(), there)],
        vec![("demo".into(), here)],
    ]
}

/// The one difference between the stores' keys: SQLite keeps an event ID once across all
/// sites, PostgreSQL once per site (its keys start with the site, so that a database
/// distributed by site checks them on one shard). The tag sends an event to one site only.
#[test]
fn an_event_id_is_kept_once_per_site_on_postgres() {
    let (a, b) = (sqlite(), postgres());
    let e = devices(7000)[0].clone();
    for o in [&a, &b] {
        assert_eq!(
            statuses(o.store.as_ref(), &[&Batch::new("demo", 1, vec![e.clone()])]),
            [Status::Accepted]
        );
    }
    let elsewhere = |o: &Opened| statuses(o.store.as_ref(), &[&Batch::new("other", 1, vec![e.clone()])]);
    assert_eq!(elsewhere(&a), [Status::Duplicate]);
    assert_eq!(elsewhere(&b), [Status::Accepted]);
    assert_eq!(elsewhere(&b), [Status::Duplicate]);
}

fn store_traffic(store: &dyn Store) -> Vec<(String, Event)> {
    let mut seen = Vec::new();
    for (g, group) in traffic().into_iter().enumerate() {
        // Some batches are flagged (an automated browser on the other site, a bot on the demo
        // site), so the class travels through every cross-store read, the rebuild and the move.
        let batches: Vec<Batch> = group
            .iter()
            .map(|(site, events)| {
                let class = match (g, site.as_str()) {
                    (1, "other") => Traffic::Automation,
                    (3, "demo") => Traffic::Bot,
                    _ => Traffic::Human,
                };
                Batch::classified(site, T0, events.clone(), class)
            })
            .collect();
        store.append(&batches.iter().collect::<Vec<_>>()).unwrap();
        for (site, events) in group {
            seen.extend(events.into_iter().map(|e| (site.clone(), e)));
        }
    }
    seen
}

/// For the same traffic, PostgreSQL answers every read exactly as SQLite does.
#[test]
fn postgres_answers_every_read_as_sqlite_does() {
    let (a, b) = (sqlite(), postgres());
    let events = store_traffic(a.store.as_ref());
    store_traffic(b.store.as_ref());
    let (want, got) = (answers(a.store.as_ref(), &events), answers(b.store.as_ref(), &events));
    assert!(want.iter().any(|a| a.contains("cross_device: true")));
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(g, w);
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(a.store.counts().unwrap(), b.store.counts().unwrap());
}

/// `psql` of the test server, on database `url`.
fn psql(url: &str, sql: &str) -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .find(|p| p.is_file())
        .expect("psql (Debian's postgresql-client, installed with postgresql)");
    let out = Command::new(bin)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every table but the schema's bookkeeping has a primary key, and `site` is in it and in
/// every unique index: each can be distributed by site.
#[test]
fn every_growing_table_is_keyed_by_site() {
    let url = pg::database("schema");
    PostgresStore::open(&url).unwrap();
    let tables = psql(
        &url,
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class \
         WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
    );
    assert_eq!(
        tables,
        "adjustments,click_pages,conversions,events,health,identities,postback_plans,postbacks,server_orders,touches,utt_schema"
    );
    let unkeyed = psql(
        &url,
        "SELECT coalesce(string_agg(c.relname || ':' || i.relname, ','), '') FROM pg_index x \
         JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relname NOT IN ('health', 'utt_schema') \
         AND (x.indisunique OR x.indisprimary) AND NOT EXISTS ( \
           SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'site' \
           AND a.attnum = ANY (x.indkey))",
    );
    assert_eq!(unkeyed, "", "unique indexes without site");
    let without_pk = psql(
        &url,
        "SELECT coalesce(string_agg(relname, ','), '') FROM pg_class c WHERE relkind = 'r' \
         AND relnamespace = 'public'::regnamespace AND NOT EXISTS ( \
           SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisprimary)",
    );
    assert_eq!(without_pk, "");
}

/// Collectors starting together on a new database apply each migration once (the others wait
/// for the advisory lock, then find it applied); the version is recorded.
#[test]
fn migrations_run_once_when_collectors_start_together() {
    let url = pg::database("migrate");
    let opened: Vec<_> = std::thread::scope(|s| {
        let tries: Vec<_> = (0..6).map(|_| s.spawn(|| PostgresStore::open(&url))).collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for o in &opened {
        assert!(o.is_ok(), "{:?}", o.as_ref().err());
    }
    let store = opened.into_iter().next().unwrap().unwrap();
    let want: Vec<i32> = (1..=utt_collector::store::postgres::schema::version()).collect();
    assert_eq!(store.schema_versions().unwrap(), want);
    // Version 7: the postback planner's sweep finds server confirmations by arrival.
    let index = psql(
        &url,
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'server_orders_received'",
    );
    assert!(index.contains("(site, received)"), "{index:?}");
    // A database from a newer collector is refused, not written.
    psql(&url, "INSERT INTO utt_schema (version) VALUES (999)");
    let e = PostgresStore::open(&url).err().expect("refused");
    assert!(e.0.contains("newer than this collector"), "{e}");
}

/// Commits are synchronous even when the database's default says otherwise.
#[test]
fn commits_are_synchronous_whatever_the_database_default() {
    let url = pg::database("sync");
    let name = url.rsplit('/').next().unwrap();
    psql(&url, &format!("ALTER DATABASE {name} SET synchronous_commit = off"));
    assert_eq!(psql(&url, "SHOW synchronous_commit"), "off");
    let store = PostgresStore::open(&url).unwrap();
    assert_eq!(store.setting("synchronous_commit").unwrap(), "on");
}

/// The derived tables are made again from the events: the same answers as before, whether
/// they were lost or damaged.
#[test]
fn postgres_derived_tables_are_rebuilt_from_the_events() {
    let url = pg::database("rebuild");
    let store = PostgresStore::open(&url).unwrap();
    let events = store_traffic(&store);
    let want = answers(&store, &events);
    psql(
        &url,
        "DELETE FROM touches; UPDATE click_pages SET views = 99; DELETE FROM identities",
    );
    assert_ne!(answers(&store, &events), want);
    let r = store.rebuild_derived().unwrap();
    assert_eq!(r.events, store.counts().unwrap().events);
    assert!(r.touches > 0 && r.pages > 0 && r.identities > 0, "{r:?}");
    assert_eq!(answers(&store, &events), want);
}

/// Every event of a SQLite database moves to PostgreSQL, with its conversions and derived rows:
/// the same answers after; and a second run (here the command's) stores nothing twice.
#[test]
fn a_sqlite_database_moves_to_postgres() {
    let from = sqlite();
    let events = store_traffic(from.store.as_ref());
    // Confirmations and adjustments are no events: they move too.
    let order = from.store.conversions("demo", 0, 1, Exclude::NONE).unwrap()[0]
        .order_id
        .clone();
    assert_eq!(
        from.store.confirm(&confirmation(&order, "12.00", T0)).unwrap(),
        Status::Accepted
    );
    assert_eq!(
        from.store.confirm(&confirmation("SERVER-ONLY", "3", T0)).unwrap(),
        Status::Accepted
    );
    assert_eq!(
        from.store.adjust(&refund("SERVER-ONLY", "R9")).unwrap(),
        Adjusted::Accepted
    );
    let orders = from.store.export_orders().unwrap();
    let want = answers(from.store.as_ref(), &events);
    let counts = from.store.counts().unwrap();
    from.store.close().unwrap();
    let file = from.dir.join("utt.db");
    let url = pg::database("import");
    let to = PostgresStore::open(&url).unwrap();
    let r = import_sqlite(&file, &to).unwrap();
    assert_eq!(
        r,
        Imported {
            read: counts.events,
            stored: counts.events,
            duplicates: 0,
            confirmations: (2, 2),
            adjustments: (1, 1),
        }
    );
    assert_eq!(to.export_orders().unwrap(), orders);
    assert_eq!(to.counts().unwrap(), counts);
    assert_eq!(answers(&to, &events), want);
    drop(to);
    let out = Command::new(env!("CARGO_BIN_EXE_utt-collector"))
        .args(["--db", &url, "--import-sqlite"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains(&format!("read {} events", counts.events))
            && text.contains(&format!("0 stored in postgres://utt@127.0.0.1:{}/", pg::shared().port))
            && text.contains(&format!("{} already there", counts.events))
            && text.contains("2 server confirmations (0 new), 1 adjustments (0 new)"),
        "{text}"
    );
    // Into SQLite: refused with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_utt-collector"))
        .args(["--db", "x.db", "--import-sqlite"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--db must be a postgres:// URL"));
}

/// A class code this collector does not know (a newer collector's, in a shared database) is
/// read as automation (`Traffic::from_code`), and the reads that exclude classes in SQL treat it
/// the same: left out wherever automation is.
fn an_unknown_class_code_is_excluded_as_automation(store: &dyn Store, set_code: &dyn Fn(i64)) {
    let e = decode(&event(
        9000,
        Some("newer"),
        T0,
        vec![click("irclickid", "impact", "I-NEW", T0 - 5)],
        conversion("O-NEW", None),
    ));
    store.append(&[&Batch::new("demo", 1, vec![e])]).unwrap();
    // A read of the derived rows waits for them (SQLite derives them behind the append).
    assert_eq!(store.clicks("demo", 0, T0 + 1, 10, Exclude::NONE).unwrap().len(), 1);
    set_code(3);
    let orders = |exclude| -> Vec<(String, Traffic)> {
        let c = store.conversions("demo", 0, 10, exclude).unwrap();
        c.into_iter().map(|c| (c.order_id, c.traffic)).collect()
    };
    let clicks = |exclude| -> Vec<(String, Traffic)> {
        let c = store.clicks("demo", 0, T0 + 1, 10, exclude).unwrap();
        c.into_iter().map(|t| (t.value, t.traffic)).collect()
    };
    assert_eq!(orders(Exclude::NONE), [("O-NEW".to_string(), Traffic::Automation)]);
    assert_eq!(clicks(Exclude::NONE), [("I-NEW".to_string(), Traffic::Automation)]);
    for exclude in [Exclude::FLAGGED, Exclude::of(&[Traffic::Automation])] {
        assert_eq!(orders(exclude), [], "{exclude:?}");
        assert_eq!(clicks(exclude), [], "{exclude:?}");
    }
    assert_eq!(orders(Exclude::of(&[Traffic::Bot])).len(), 1);
    assert_eq!(clicks(Exclude::of(&[Traffic::Bot])).len(), 1);
}

#[test]
fn an_unknown_class_code_is_excluded_as_automation_on_sqlite() {
    let opened = sqlite();
    let set_code = |code: i64| {
        for (file, table) in [("utt.db", "conversions"), ("utt.db-derived", "touches")] {
            let db = rusqlite::Connection::open(opened.dir.join(file)).unwrap();
            db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            db.execute(&format!("UPDATE {table} SET traffic = ?1"), [code]).unwrap();
        }
    };
    an_unknown_class_code_is_excluded_as_automation(opened.store.as_ref(), &set_code);
}

#[test]
fn an_unknown_class_code_is_excluded_as_automation_on_postgres() {
    let url = pg::database("contract");
    let store = PostgresStore::open(&url).unwrap();
    let set_code = |code: i64| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            for table in ["conversions", "touches"] {
                let sql = format!("UPDATE {table} SET traffic = {code}");
                db.execute(&sql, &[]).await.unwrap();
            }
        });
    };
    an_unknown_class_code_is_excluded_as_automation(&store, &set_code);
}
