//! Measures generation speed:
//! `cargo run --release -p strata-generate --example throughput -- [users] [days]`.

use std::time::Instant;

use strata_generate::{Generator, GeneratorConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let users = args.next().map_or(1000, |a| a.parse().expect("users"));
    let days = args.next().map_or(7, |a| a.parse().expect("days"));
    let config = GeneratorConfig {
        users,
        days: Some(days),
        ..GeneratorConfig::default()
    };
    let started = Instant::now();
    let mut generator = Generator::new(config);
    for generated in generator.by_ref() {
        std::hint::black_box(&generated);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let summary = generator.summary();
    println!("{summary:#?}");
    println!(
        "{} messages in {elapsed:.2}s = {:.0} messages/s",
        summary.messages,
        summary.messages as f64 / elapsed
    );
}
