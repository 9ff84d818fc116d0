use strata_generate::{Generator, GeneratorConfig};

#[test]
fn endless_run_keeps_memory_bounded() {
    let config = GeneratorConfig {
        days: None,
        ..GeneratorConfig::default()
    };
    let mut generator = Generator::new(config);
    let mut max_buffered = 0;
    let mut max_live = 0;
    let mut last = None;
    for _ in 0..200_000 {
        let g = generator.next().expect("endless");
        if let Some(previous) = last {
            assert!(previous <= g.send_at);
        }
        last = Some(g.send_at);
        max_buffered = max_buffered.max(generator.buffered());
        max_live = max_live.max(generator.live_users());
    }
    let days = generator.summary().days;
    assert!(days >= 20, "only {days} days simulated");
    // In flight: the last hour of sessions plus up to three days of offline
    // batches, a small fraction of the ~6k messages a day.
    assert!(max_buffered < 5_000, "buffer grew to {max_buffered}");
    // Users churn within a year, so at most a year of arrivals is alive.
    assert!(max_live <= 1000 / 30 * 366, "{max_live} live users");
}

#[test]
fn bounded_run_flushes_late_messages() {
    let config = GeneratorConfig {
        users: 300,
        days: Some(2),
        ..GeneratorConfig::default()
    };
    let messages: Vec<_> = Generator::new(config).collect();
    let end = GeneratorConfig::default()
        .start
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        + chrono::TimeDelta::days(2);
    assert!(
        messages.iter().any(|g| g.send_at > end),
        "offline batches sent after the last day are still delivered"
    );
}

#[test]
fn generator_can_move_to_another_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Generator>();
}
