use std::collections::HashMap;

use chrono::TimeDelta;

use crate::{default_run, str_field, time};

#[test]
fn send_times_never_decrease() {
    let (messages, _) = default_run();
    for pair in messages.windows(2) {
        assert!(pair[0].send_at <= pair[1].send_at);
    }
}

#[test]
fn events_happen_before_they_are_sent() {
    let (messages, _) = default_run();
    let mut skewed = 0;
    for g in messages {
        let (Some(ts), Some(sent)) = (time(&g.message, "timestamp"), time(&g.message, "sentAt"))
        else {
            panic!("missing clocks: {}", g.message);
        };
        // Both clocks come from the same device, so skew cancels out.
        assert!(ts <= sent, "{}", g.message);
        if sent == g.send_at {
            assert!(ts <= g.send_at);
        } else {
            skewed += 1;
            assert!((sent - g.send_at).abs() >= TimeDelta::minutes(2));
            assert!((sent - g.send_at).abs() <= TimeDelta::hours(6));
        }
    }
    let share = f64::from(skewed) / messages.len() as f64;
    assert!(share > 0.01 && share < 0.12, "skewed share {share}");
}

/// Sessions are bursts with pauses of at most a few minutes, separated by
/// more than 30 minutes of silence on the same device.
#[test]
fn sessions_are_separated_by_idle_gaps() {
    let (messages, _) = default_run();
    let mut by_device: HashMap<&str, Vec<i64>> = HashMap::new();
    for g in messages {
        if let (Some(anon), Some(ts)) = (
            str_field(&g.message, "anonymousId"),
            time(&g.message, "timestamp"),
        ) {
            by_device
                .entry(anon)
                .or_default()
                .push(ts.timestamp_millis());
        }
    }
    let mut long_gaps = 0;
    for times in by_device.values_mut() {
        times.sort_unstable();
        times.dedup();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap <= 4 * 60_000 || gap > 30 * 60_000,
                "gap of {gap} ms is neither within nor between sessions"
            );
            long_gaps += u32::from(gap > 30 * 60_000);
        }
    }
    assert!(long_gaps > 500, "{long_gaps} returning sessions");
}

/// Clocks are hand-formatted; an unskewed device's `sentAt` must equal the
/// true send time across month ends and leap days.
#[test]
fn clocks_survive_calendar_edges() {
    let config = strata_generate::GeneratorConfig {
        users: 100,
        start: chrono::NaiveDate::from_ymd_opt(2028, 2, 27).unwrap(),
        days: Some(4),
        ..crate::small(5)
    };
    let messages: Vec<_> = strata_generate::Generator::new(config).collect();
    let exact = messages
        .iter()
        .filter(|g| time(&g.message, "sentAt") == Some(g.send_at))
        .count();
    assert!(
        exact * 10 > messages.len() * 8,
        "{exact} of {}",
        messages.len()
    );
    assert!(messages.iter().any(|g| {
        str_field(&g.message, "timestamp").is_some_and(|t| t.starts_with("2028-02-29T"))
    }));
}
