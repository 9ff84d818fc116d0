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
    let backend_log = add_backend_log(&mut config)?;
    let partner_drops = add_partner_feed(&mut config)?;
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
    if let Some(path) = &backend_log {
        println!(
            "  backend:    {} (source `{BACKEND_SOURCE}`, kind log_file): the shop backend logs each order here",
            path.display()
        );
    }
    if let Some(drops) = &partner_drops {
        let start = (Utc::now() - chrono::Duration::days(args.days as i64)).date_naive();
        write_ad_spend(drops, start, args.seed)?;
        println!(
            "  partner:    {} (source `{PARTNER_SOURCE}`, kind file): daily ad spend CSVs, in bronze.feed_ad_spend",
            drops.display()
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
    let live_backend = backend_log.clone();
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
        let mut history_backend = BackendLog::open(backend_log.as_deref());
        let history = std::iter::from_fn(|| generator.next_if(|g| g.send_at <= started))
            .filter(|g| !history_backend.takes(g));
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
        let mut backend = BackendLog::open(live_backend.as_deref());
        let live = merge_by_send_time(shops).filter(move |g| !backend.takes(g));
        if let Err(e) = poster.send_all(live, 0, 100, Pacing::Live, &progress).await {
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

const BACKEND_SOURCE: &str = "backend";

/// The shop backend's order log: orders are confirmed by the backend, which
/// logs each as a line the `backend` source tails, instead of the client
/// sending it. The same messages by another source, so every metric stays.
struct BackendLog {
    file: Option<std::fs::File>,
}

impl BackendLog {
    fn open(path: Option<&std::path::Path>) -> Self {
        let file = path.and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        });
        Self { file }
    }

    /// Logs `g` when it is an order; true when it did.
    fn takes(&mut self, g: &strata_generate::Generated) -> bool {
        let Some(file) = &mut self.file else {
            return false;
        };
        if g.message["event"] != "Order Completed" {
            return false;
        }
        // A backend logs with its own clock: `timestamp` is the event time,
        // and there is no client `sentAt` to correct it by.
        let mut message = g.message.clone();
        if let Some(object) = message.as_object_mut() {
            object.remove("sentAt");
        }
        let mut line = message.to_string();
        line.push('\n');
        std::io::Write::write_all(file, line.as_bytes()).is_ok()
    }
}

/// A `log_file` source for the shop backend's order log, unless the config
/// has a source of that name already.
fn add_backend_log(config: &mut strata_core::Config) -> Result<Option<std::path::PathBuf>> {
    if config.sources.iter().any(|s| s.name == BACKEND_SOURCE) {
        return Ok(None);
    }
    let dir = config.data_dir.join("demo");
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::Runtime(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("backend-orders.log");
    let mut options = toml::Table::new();
    options.insert(
        "path".into(),
        toml::Value::String(path.display().to_string()),
    );
    config.sources.push(strata_core::config::SourceConfig {
        name: BACKEND_SOURCE.into(),
        kind: "log_file".into(),
        options,
    });
    Ok(Some(path))
}

const PARTNER_SOURCE: &str = "ad_partner";
const CAMPAIGNS: [&str; 4] = ["google-search", "newsletter", "instagram", "tiktok"];

/// A `file` source for an ad partner's daily spend exports, unless the
/// config has a source of that name already.
fn add_partner_feed(config: &mut strata_core::Config) -> Result<Option<std::path::PathBuf>> {
    if config.sources.iter().any(|s| s.name == PARTNER_SOURCE) {
        return Ok(None);
    }
    let dir = config.data_dir.join("demo").join("ad-spend");
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::Runtime(format!("cannot create {}: {e}", dir.display())))?;
    let mut options = toml::Table::new();
    options.insert(
        "path".into(),
        toml::Value::String(dir.display().to_string()),
    );
    options.insert("format".into(), "csv".into());
    options.insert("table".into(), "ad_spend".into());
    config.sources.push(strata_core::config::SourceConfig {
        name: PARTNER_SOURCE.into(),
        kind: "file".into(),
        options,
    });
    Ok(Some(dir))
}

/// One CSV per day from `start` to yesterday, as the partner drops them:
/// written under a `.tmp` name and renamed, so the feed never reads half.
fn write_ad_spend(dir: &std::path::Path, start: chrono::NaiveDate, seed: u64) -> Result<()> {
    let today = Utc::now().date_naive();
    let mut day = start;
    while day < today {
        let name = format!("ad_spend_{day}.csv");
        let path = dir.join(&name);
        if !path.exists() {
            let mut text = String::from("date,campaign,impressions,clicks,spend_usd\n");
            for (i, campaign) in CAMPAIGNS.iter().enumerate() {
                // A small deterministic spread per day and campaign.
                let k = (day.to_epoch_days() as u64)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed)
                    .wrapping_add(i as u64 * 97)
                    % 1_000;
                let impressions = 20_000 + k * 37;
                let clicks = impressions / (40 + (k % 30));
                let spend = clicks as f64 * (0.4 + (k % 50) as f64 / 100.0);
                text.push_str(&format!(
                    "{day},{campaign},{impressions},{clicks},{spend:.2}\n"
                ));
            }
            let tmp = dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, text)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| CliError::Runtime(format!("cannot write {}: {e}", path.display())))?;
        }
        day = day.succ_opt().unwrap_or(today);
    }
    Ok(())
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
