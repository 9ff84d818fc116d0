//! `strata demo`: `serve` plus the synthetic shop app — days of history
//! first, then live traffic as it happens.

use chrono::Utc;
use strata_generate::{Generator, GeneratorConfig};

use crate::cli::{DemoArgs, GlobalArgs};
use crate::commands::generate::{Pacing, Poster};
use crate::error::{CliError, Result};
use crate::server::{Server, ensure_default_source, load_config};

const HISTORY_MARKER: &str = "demo_history_loaded";
/// Live traffic merges this many independent shops (other seeds) with the
/// one whose history was loaded: one shop of a size that backfills in
/// seconds produces only about one event a second live, too little to watch.
const LIVE_SHOPS: u64 = 16;

pub async fn run(global: &GlobalArgs, args: DemoArgs) -> Result<()> {
    let mut config = load_config(global, args.listen)?;
    ensure_default_source(&mut config)?;
    // The scheduler role keeps silver and gold current; a demo shows the
    // history in gold within a minute, not at the next five-minute look.
    config.orchestrator.dirty_check_interval = config
        .orchestrator
        .dirty_check_interval
        .min(std::time::Duration::from_secs(30));
    let (source_name, write_key) = config
        .sources
        .iter()
        .find_map(|s| Some((s.name.clone(), s.write_key()?.to_string())))
        .ok_or_else(|| CliError::Usage("the demo needs an http source".into()))?;
    let shop_db = match &args.postgres {
        Some(url) => {
            let pool = super::demo_shop_db::prepare(url, &mut config, args.seed).await?;
            strata_batch::configure(&config).map_err(|e| CliError::Usage(e.to_string()))?;
            Some(pool)
        }
        None => None,
    };
    let server = Server::start(&config, &[]).await?;
    let addr = server
        .addr
        .ok_or_else(|| CliError::Runtime("demo needs the collector role".into()))?;
    let url = format!("http://{addr}");
    let dashboard = format!("http://{}", server.dashboard_addr.unwrap_or(addr));
    println!("Strata demo is running.");
    println!("  dashboard:  {dashboard}/");
    println!("  realtime:   {dashboard}/api/realtime?minutes=15");
    println!("  write key:  {write_key} (source `{source_name}`)");
    println!(
        "  query:      strata sql --data-dir {} \"select count(*) from bronze.events\"",
        config.data_dir.display()
    );
    if let Some(url) = &args.postgres {
        println!(
            "  database:   {url}, schema strata_demo (source `{}`): silver.accounts, silver.products, silver.orders",
            super::demo_shop_db::SOURCE
        );
    }
    println!("Press Ctrl-C to stop.");
    let changes = shop_db.map(super::demo_shop_db::spawn_changes);

    let marker = config.data_dir.join(HISTORY_MARKER);
    let history_loaded = marker.exists();
    let start = (Utc::now() - chrono::Duration::days(args.days as i64)).date_naive();
    let shop = move |seed: u64| {
        Generator::new(GeneratorConfig {
            seed,
            users: args.users,
            start,
            days: None,
            ..GeneratorConfig::default()
        })
    };
    let generator = shop(args.seed);
    let poster = Poster::new(&url, &write_key)?;
    let traffic = tokio::spawn(async move {
        let started = Utc::now();
        // The other shops skip their history on another thread meanwhile.
        let others = tokio::task::spawn_blocking(move || {
            (1..LIVE_SHOPS)
                .map(|i| {
                    let mut g = shop(args.seed.wrapping_add(i)).peekable();
                    while g.next_if(|m| m.send_at <= started).is_some() {}
                    g
                })
                .collect::<Vec<_>>()
        });
        // History goes in once per data dir; a restarted demo resumes live.
        let mut generator = generator.peekable();
        let history = std::iter::from_fn(|| generator.next_if(|g| g.send_at <= started));
        if !history_loaded {
            let progress = indicatif::ProgressBar::hidden();
            match poster
                .send_all(history, 0, 100, Pacing::Replay, &progress)
                .await
            {
                Ok(stats) => {
                    let _ = std::fs::write(&marker, stats.messages.to_string());
                    println!(
                        "backfilled {} days of history: {} messages ({} rejected by design: malformed on purpose); streaming live traffic",
                        args.days, stats.messages, stats.rejected
                    );
                }
                Err(e) => {
                    eprintln!("demo traffic stopped: {e}");
                    return;
                }
            }
        } else {
            history.for_each(drop);
            println!("history already loaded in this data dir; streaming live traffic");
        }
        let mut shops = match others.await {
            Ok(others) => others,
            Err(e) => {
                eprintln!("demo traffic stopped: {e}");
                return;
            }
        };
        shops.push(generator);
        let progress = indicatif::ProgressBar::hidden();
        if let Err(e) = poster
            .send_all(merge_by_send_time(shops), 0, 100, Pacing::Live, &progress)
            .await
        {
            eprintln!("demo traffic stopped: {e}");
        }
    });
    let result = server.run_until_signal().await;
    traffic.abort();
    if let Some(changes) = changes {
        changes.abort();
    }
    result
}

/// Merges generators that are each ordered by send time into one such stream.
fn merge_by_send_time(
    mut shops: Vec<std::iter::Peekable<Generator>>,
) -> impl Iterator<Item = strata_generate::Generated> + Send {
    std::iter::from_fn(move || {
        let next = shops
            .iter_mut()
            .enumerate()
            .filter_map(|(i, g)| g.peek().map(|m| (m.send_at, i)))
            .min()?;
        shops[next.1].next()
    })
}
