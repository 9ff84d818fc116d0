use strata_generate::Generator;

use crate::small;

fn render(seed: u64) -> Vec<String> {
    Generator::new(small(seed))
        .map(|g| format!("{} {}", g.send_at.timestamp_millis(), g.message))
        .collect()
}

#[test]
fn same_config_gives_identical_bytes() {
    let a = render(7);
    let b = render(7);
    assert!(a.len() > 1000, "only {} messages", a.len());
    assert_eq!(a, b);
}

#[test]
fn different_seed_differs() {
    let a = render(7);
    let b = render(8);
    assert_ne!(a, b);
}

#[test]
fn summary_matches_yielded_messages() {
    let mut generator = Generator::new(small(3));
    let count = generator.by_ref().count() as u64;
    let summary = generator.summary();
    assert_eq!(summary.messages, count);
    let by_type = summary.track
        + summary.identify
        + summary.page
        + summary.screen
        + summary.alias
        + summary.group;
    assert_eq!(by_type + summary.malformed, count);
    assert_eq!(summary.users, 200);
    assert_eq!(generator.buffered(), 0);
    assert!(generator.next().is_none());
}

#[test]
fn empty_population_ends() {
    let config = strata_generate::GeneratorConfig {
        users: 0,
        days: None,
        ..small(1)
    };
    assert_eq!(Generator::new(config).count(), 0);
}
