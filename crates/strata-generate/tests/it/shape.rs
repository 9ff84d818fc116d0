use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use crate::{default_run, is_malformed, str_field, time};

fn valid() -> impl Iterator<Item = &'static Value> {
    default_run()
        .0
        .iter()
        .map(|g| &g.message)
        .filter(|m| !is_malformed(m))
}

fn tracks(event: &'static str) -> impl Iterator<Item = &'static Value> {
    valid().filter(move |m| str_field(m, "event") == Some(event))
}

fn is_timestamp(text: Option<&str>) -> bool {
    // RFC 3339, UTC, milliseconds: 2026-01-01T12:34:56.789Z
    text.is_some_and(|t| {
        t.len() == 24
            && t.ends_with('Z')
            && &t[19..20] == "."
            && chrono::DateTime::parse_from_rfc3339(t).is_ok()
    })
}

#[test]
fn volume_is_tens_of_thousands() {
    let (messages, summary) = default_run();
    assert!(
        (20_000..100_000).contains(&messages.len()),
        "{} messages",
        messages.len()
    );
    assert_eq!(summary.messages as usize, messages.len());
}

#[test]
fn every_valid_message_has_its_fields() {
    for m in valid() {
        let kind = str_field(m, "type").unwrap();
        assert!(
            uuid::Uuid::parse_str(str_field(m, "messageId").unwrap()).is_ok(),
            "{m}"
        );
        assert!(is_timestamp(str_field(m, "timestamp")), "{m}");
        assert!(is_timestamp(str_field(m, "sentAt")), "{m}");
        assert!(m["context"].is_object(), "{m}");
        assert!(m["context"]["library"]["name"].is_string(), "{m}");
        match kind {
            "track" => {
                assert!(m["event"].is_string());
                assert!(m["properties"].is_object());
            }
            "page" | "screen" => {
                assert!(m["name"].is_string());
                assert!(m["properties"].is_object());
            }
            "identify" => {
                assert!(m["traits"].is_object());
                assert!(
                    m["userId"].is_string() && m["anonymousId"].is_string(),
                    "{m}"
                );
            }
            "group" => {
                assert!(m["groupId"].is_string());
                assert!(m["traits"].is_object());
            }
            "alias" => {
                assert!(m["previousId"].is_string() && m["userId"].is_string());
            }
            other => panic!("unexpected type {other}"),
        }
        if kind == "page" {
            let page = &m["context"]["page"];
            for field in ["path", "url", "title", "referrer"] {
                assert!(page[field].is_string(), "{m}");
            }
        }
    }
}

#[test]
fn platforms_look_like_their_sdks() {
    let mut devices: HashMap<&str, &str> = HashMap::new();
    for m in valid() {
        let context = &m["context"];
        let library = context["library"]["name"].as_str().unwrap();
        match library {
            "analytics.js" => {
                assert!(context["userAgent"].is_string());
                assert!(context["page"].is_object());
            }
            "analytics-ios" => assert_eq!(context["os"]["name"], "iOS"),
            "analytics-android" => assert_eq!(context["os"]["name"], "Android"),
            other => panic!("unknown library {other}"),
        }
        if let Some(anon) = str_field(m, "anonymousId") {
            devices.insert(anon, library);
        }
    }
    let share =
        |lib: &str| devices.values().filter(|l| **l == lib).count() as f64 / devices.len() as f64;
    let (web, ios, android) = (
        share("analytics.js"),
        share("analytics-ios"),
        share("analytics-android"),
    );
    assert!((0.5..0.7).contains(&web), "web {web}");
    assert!((0.18..0.32).contains(&ios), "ios {ios}");
    assert!((0.1..0.22).contains(&android), "android {android}");
}

#[test]
fn funnel_narrows_step_by_step() {
    let steps = [
        "Product Viewed",
        "Product Added",
        "Checkout Started",
        "Order Completed",
    ];
    let counts: Vec<usize> = steps.iter().map(|e| tracks(e).count()).collect();
    assert!(counts[3] > 50, "{counts:?}");
    for pair in counts.windows(2) {
        assert!(pair[0] > pair[1], "{counts:?}");
    }
    assert!(tracks("Products Searched").count() > 0);
    for order in tracks("Order Completed") {
        let props = &order["properties"];
        assert!(props["order_id"].is_string());
        assert!(props["revenue"].as_f64().unwrap() > 0.0);
        assert_eq!(props["currency"], "USD");
    }
    for viewed in tracks("Product Viewed") {
        let props = &viewed["properties"];
        assert!(props["product_id"].is_string() && props["category"].is_string());
        assert!(props["price"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn experiment_splits_evenly_and_treatment_converts_better() {
    let mut by_device: HashMap<&str, &str> = HashMap::new();
    let mut by_person: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut exposures: BTreeMap<&str, usize> = BTreeMap::new();
    for m in tracks("Experiment Viewed") {
        assert_eq!(m["properties"]["experiment_id"], "checkout_redesign");
        let variation = m["properties"]["variation_id"].as_str().unwrap();
        *exposures.entry(variation).or_default() += 1;
        by_device.insert(str_field(m, "anonymousId").unwrap(), variation);
        if let Some(user) = str_field(m, "userId") {
            by_person.entry(user).or_default().insert(variation);
        }
    }
    let total = exposures.values().sum::<usize>() as f64;
    let treatment = exposures["treatment"] as f64 / total;
    assert!((0.44..0.56).contains(&treatment), "{exposures:?}");

    let both = by_person.values().filter(|v| v.len() == 2).count() as f64;
    assert!(
        both / (by_person.len() as f64) < 0.03,
        "{both} of {}",
        by_person.len()
    );

    let mut started: HashMap<&str, f64> = HashMap::new();
    let mut completed: HashMap<&str, f64> = HashMap::new();
    for (event, counts) in [
        ("Checkout Started", &mut started),
        ("Order Completed", &mut completed),
    ] {
        for m in tracks(event) {
            if let Some(v) = by_device.get(str_field(m, "anonymousId").unwrap()) {
                *counts.entry(v).or_default() += 1.0;
            }
        }
    }
    let rate = |v: &str| completed[v] / started[v];
    assert!(
        rate("treatment") > rate("control") * 1.05,
        "treatment {} vs control {}",
        rate("treatment"),
        rate("control")
    );
}

#[test]
fn identify_links_anonymous_browsing_to_users() {
    let (messages, _) = default_run();
    let mut plans = HashSet::new();
    let mut identified = HashSet::new();
    for m in valid().filter(|m| m["type"] == "identify") {
        let traits = &m["traits"];
        assert!(
            traits["email"].as_str().is_some_and(|e| e.contains('@')),
            "{m}"
        );
        if let Some(plan) = traits["plan"].as_str() {
            plans.insert(plan);
        }
        identified.insert(str_field(m, "anonymousId").unwrap());
    }
    assert!(
        identified.len() > 300,
        "{} identified devices",
        identified.len()
    );
    assert!(plans.contains("free") && plans.contains("pro"), "{plans:?}");

    // Per device, in event time: anonymous messages, then an identify, then
    // only messages carrying the userId (nobody logs out).
    let mut by_device: HashMap<&str, Vec<(i64, &Value)>> = HashMap::new();
    let mut seen = HashSet::new();
    for g in messages {
        let m = &g.message;
        if !seen.insert(str_field(m, "messageId").unwrap()) {
            continue;
        }
        if let Some(anon) = str_field(m, "anonymousId") {
            let ts = time(m, "timestamp").unwrap().timestamp_millis();
            by_device.entry(anon).or_default().push((ts, m));
        }
    }
    let (mut linked, mut linked_by_identify, mut browsed_first) = (0, 0, 0);
    for events in by_device.values_mut() {
        events.sort_by_key(|(ts, _)| *ts);
        let Some(first) = events.iter().position(|(_, m)| m.get("userId").is_some()) else {
            continue;
        };
        linked += 1;
        // `traits` without `groupId`: an identify, possibly with a broken type.
        let m = events[first].1;
        linked_by_identify += usize::from(m.get("traits").is_some() && m.get("groupId").is_none());
        browsed_first += usize::from(first > 0);
        for (_, m) in &events[first..] {
            assert!(is_malformed(m) || m["userId"].is_string(), "{m}");
        }
    }
    assert!(
        linked_by_identify * 100 >= linked * 98,
        "{linked_by_identify} of {linked}"
    );
    assert!(
        browsed_first * 10 > linked * 9,
        "{browsed_first} of {linked}"
    );
    let first_identify = identified;

    // Some visitors never sign up.
    let devices: HashSet<&str> = valid()
        .filter_map(|m| str_field(m, "anonymousId"))
        .collect();
    assert!(devices.len() > first_identify.len() + 50);

    let aliases: Vec<_> = valid().filter(|m| m["type"] == "alias").collect();
    assert!(!aliases.is_empty());
    for alias in aliases {
        assert!(first_identify.contains(str_field(alias, "previousId").unwrap()));
    }
    assert!(valid().any(|m| m["type"] == "group"));
}

#[test]
fn faults_happen_at_their_rates() {
    let (messages, summary) = default_run();
    let total = messages.len() as f64;

    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut late = 0;
    let mut malformed = 0;
    for g in messages {
        let m = &g.message;
        if !seen.insert(str_field(m, "messageId").unwrap()) {
            duplicates += 1;
        }
        let delay = time(m, "sentAt").unwrap() - time(m, "timestamp").unwrap();
        if delay >= chrono::TimeDelta::hours(1) {
            late += 1;
            assert!(delay <= chrono::TimeDelta::days(3) + chrono::TimeDelta::hours(1));
        }
        malformed += usize::from(is_malformed(m));
    }
    let dup_rate = duplicates as f64 / total;
    let late_rate = late as f64 / total;
    assert!((0.007..0.013).contains(&dup_rate), "duplicates {dup_rate}");
    assert!((0.012..0.03).contains(&late_rate), "late {late_rate}");
    assert!(
        malformed > 0 && (malformed as f64) < total * 0.004,
        "{malformed} malformed"
    );
    assert_eq!(summary.duplicates, duplicates as u64);
    assert_eq!(summary.malformed, malformed as u64);
    assert_eq!(summary.late, late as u64);
}

#[test]
fn active_days_have_tens_of_events() {
    let mut per_device_day: HashMap<(&str, String), usize> = HashMap::new();
    for m in valid() {
        let (Some(anon), Some(ts)) = (str_field(m, "anonymousId"), str_field(m, "timestamp"))
        else {
            continue;
        };
        *per_device_day
            .entry((anon, ts[..10].to_owned()))
            .or_default() += 1;
    }
    let mean = per_device_day.values().sum::<usize>() as f64 / per_device_day.len() as f64;
    assert!(
        (10.0..40.0).contains(&mean),
        "{mean} events per active device-day"
    );
}
