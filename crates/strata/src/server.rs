//! Wiring of the roles into one process: the log, the collector's HTTP
//! server, the bronze loader, the stream processor and the scheduler, with
//! an orderly shutdown (stop accepting, finish in-flight requests, drain the
//! log into bronze and the realtime table, give unfinished model runs back
//! to the queue, commit, exit).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use strata_core::Config;
use strata_core::config::SourceConfig;
use strata_lake::Lake;
use strata_lake::bronze::{BronzeLoader, CONSUMER};
use strata_log::{EmbeddedLog, EmbeddedLogConfig, Log};
use strata_sources::Collector;
use strata_stream::StreamProcessor;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::{GlobalArgs, Role};
use crate::error::{CliError, Result};

/// Loads the config file and applies command-line and environment overrides.
pub fn load_config(global: &GlobalArgs, listen: Option<String>) -> Result<Config> {
    let mut config = Config::load(global.config.as_deref())?;
    strata_sources::check_config(&config)?;
    // The CDC tables' silver models exist once their sources are known.
    strata_batch::configure(&config).map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(dir) = &global.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(listen) = listen {
        config.listen = listen;
    }
    Ok(config)
}

/// With no `[[sources]]`, SPEC §1 wants one source named `default` whose key
/// comes from `STRATA_WRITE_KEY`, or is generated once. The same holds when
/// every source reads from elsewhere (CDC): the tracking API always has a
/// key. The generated key is kept in the data dir so restarts do not break
/// clients. Returns the key when it was generated or read back, so it can
/// be printed.
pub fn ensure_default_source(config: &mut Config) -> Result<Option<String>> {
    if config.sources.iter().any(SourceConfig::is_http) {
        return Ok(None);
    }
    let from_env = std::env::var("STRATA_WRITE_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let (key, to_print) = match from_env {
        Some(key) => (key, None),
        None => {
            let key = stored_or_new_key(&config.data_dir)?;
            (key.clone(), Some(key))
        }
    };
    config.sources.push(SourceConfig::http("default", key));
    Ok(to_print)
}

fn stored_or_new_key(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("default_write_key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        let key = key.trim().to_string();
        if !key.is_empty() {
            // Data dirs of earlier releases kept the key world-readable.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
            return Ok(key);
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|e| {
        CliError::Runtime(format!(
            "cannot create data dir {}: {e}",
            data_dir.display()
        ))
    })?;
    let key = format!("wk_{}", uuid::Uuid::new_v4().simple());
    let created = write_private_once(&path, &key)
        .map_err(|e| CliError::Runtime(format!("cannot write {}: {e}", path.display())))?;
    if created {
        return Ok(key);
    }
    // Another process started on the same data dir at the same moment won:
    // every process uses the one key on disk.
    let stored = std::fs::read_to_string(&path)
        .map_err(|e| CliError::Runtime(format!("cannot read {}: {e}", path.display())))?;
    let stored = stored.trim();
    if stored.is_empty() {
        return Err(CliError::Runtime(format!(
            "{} is empty; delete it for a new key, or set STRATA_WRITE_KEY",
            path.display()
        )));
    }
    Ok(stored.to_string())
}

/// Creates a secret readable by its owner only, whole or not at all, unless
/// the file exists already (then returns false and leaves it): written to a
/// file of this process's own, then linked into place, which fails rather
/// than replace a file another process linked first.
fn write_private_once(path: &Path, contents: &str) -> std::io::Result<bool> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut file| {
        // A tmp file left by a crash may have had wider permissions.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens the log with the consumers that hold back its retention: the
/// bronze loader always (bronze must see every record), the stream
/// processor when it runs in this process.
pub fn open_log(config: &Config, with_stream: bool) -> Result<Arc<EmbeddedLog>> {
    let mut consumers = vec![CONSUMER.to_string()];
    if with_stream {
        consumers.push(strata_stream::CONSUMER.to_string());
    }
    let log = EmbeddedLog::open(
        config.log_dir(),
        EmbeddedLogConfig {
            partitions: config.log.partitions,
            segment_bytes: config.log.segment_bytes,
            consumers,
            ..EmbeddedLogConfig::default()
        },
    )?;
    Ok(log)
}

pub struct Server {
    pub addr: Option<SocketAddr>,
    /// Where the dashboard and `/api/*` are served when not on `addr`
    /// (`dashboard_listen`).
    pub dashboard_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
    signals: Signals,
}

impl Server {
    pub async fn start(config: &Config, roles: &[Role]) -> Result<Server> {
        // Listening starts before the server is ready: a SIGTERM sent as
        // soon as `/ready` answers must shut down cleanly, not kill.
        let signals = Signals::listen();
        let all = roles.is_empty();
        let has = |role: Role| all || roles.contains(&role);
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            CliError::Runtime(format!(
                "cannot create data dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        // A scheduler alone does not touch the log: several of them may
        // run beside the process that owns it.
        let log = if has(Role::Collector) || has(Role::Loader) || has(Role::Stream) {
            Some(open_log(config, has(Role::Stream))?)
        } else {
            None
        };
        let dyn_log = || -> Arc<dyn Log> { log.clone().expect("log opened for this role") };
        let (stop, stop_rx) = watch::channel(false);

        // Opened before the HTTP server so `/api/realtime` is served from
        // the first request.
        let mut stream = None;
        let mut realtime = None;
        if has(Role::Stream) {
            let lake = Lake::new(config.lake_dir());
            let processor =
                StreamProcessor::open(&config.stream, &lake, dyn_log(), config.stream_dir())
                    .await?;
            realtime = Some(processor.handle());
            stream = Some(processor);
        }

        // The scheduler's store is opened before serving so `/api/runs`
        // answers from the first request, and a bad database_url fails
        // start-up instead of a later request.
        let store = if has(Role::Scheduler) || has(Role::Collector) {
            Some(crate::commands::batch::open_store(config).await?)
        } else {
            None
        };
        let mut scheduler = None;
        if has(Role::Scheduler) {
            let runner =
                crate::commands::batch::scheduler(config, config.orchestrator.parallel, true, true)
                    .await?;
            let stop = stop_rx.clone();
            scheduler = Some(tokio::spawn(async move {
                let result = runner.run(stop).await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, "scheduler stopped; gold tables will fall behind");
                }
                result.map_err(CliError::from)
            }));
        }

        let mut http = Vec::new();
        let mut addr = None;
        let mut dashboard_addr = None;
        if has(Role::Collector) {
            let listener = bind(&config.listen, "").await?;
            addr = listener.local_addr().ok();
            let collector = Collector::new(&config.sources, dyn_log(), config.collector.clone());
            let mut api = strata_api::Api::builder(config.clone());
            if let Some(handle) = realtime.clone() {
                api = api.with_realtime(handle);
            }
            if let Some(store) = store.clone() {
                api = api.with_store(store);
            }
            let api = strata_api::router(api.build());
            let ingest = strata_sources::http::router(collector.clone());
            let header_read_timeout = config.collector.header_read_timeout;
            // With dashboard_listen the listen port serves ingestion only:
            // the dashboard and /api/* answer 404 there.
            let app = match &config.dashboard_listen {
                None => ingest.merge(api),
                Some(address) => {
                    let listener = bind(address, " (dashboard_listen)").await?;
                    dashboard_addr = listener.local_addr().ok();
                    let mut http_stop = stop_rx.clone();
                    http.push(tokio::spawn(async move {
                        let stopped = async move {
                            let _ = http_stop.wait_for(|stop| *stop).await;
                        };
                        strata_sources::http::serve(listener, api, header_read_timeout, stopped)
                            .await
                    }));
                    ingest
                }
            };
            warn_if_public(dashboard_addr.or(addr), config.dashboard_listen.is_some());
            let mut http_stop = stop_rx.clone();
            http.push(tokio::spawn(async move {
                let stopped = async move {
                    let _ = http_stop.wait_for(|stop| *stop).await;
                    collector.set_ready(false);
                };
                strata_sources::http::serve(listener, app, header_read_timeout, stopped).await
            }));
        }

        // Sources that read from elsewhere (CDC) are producers like the HTTP
        // API: they start with it, and stop before the consumers drain.
        let mut pulled = Vec::new();
        if has(Role::Collector) {
            let producer = strata_sources::Producer::new(dyn_log());
            for mut source in strata_sources::build_sources(config, &producer)? {
                source.start().await?;
                let source_stop = stop_rx.clone();
                let name = source.name().to_string();
                pulled.push(tokio::spawn(async move {
                    let result = source.run(source_stop).await;
                    if let Err(e) = &result {
                        tracing::error!(source = %name, error = %e, "source stopped; its data will fall behind");
                    }
                    result.map_err(CliError::from)
                }));
            }
        }

        // The log's consumers drain and stop together, after the HTTP server.
        let (drain, drain_rx) = watch::channel(false);
        let mut loader = None;
        if has(Role::Loader) {
            let lake = Lake::new(config.lake_dir());
            let bronze = BronzeLoader::open(&lake, dyn_log(), config.loader.clone()).await?;
            loader = Some(spawn_consumer(
                "bronze loader stopped; bronze tables will fall behind",
                bronze.run(drain_rx.clone()),
            ));
        }
        let stream = stream.map(|processor| {
            spawn_consumer(
                "stream processor stopped; realtime figures will fall behind",
                processor.run(drain_rx),
            )
        });

        let mut stop_rx = stop_rx;
        let task = tokio::spawn(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
            for http in http {
                match http.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "http server failed"),
                    Err(e) => tracing::error!(error = %e, "http server panicked"),
                }
            }
            for source in pulled {
                if let Err(e) = join_consumer("source", Some(source)).await {
                    tracing::error!(error = %e, "source failed");
                }
            }
            // The scheduler gives its unfinished runs back to the queue.
            let scheduled = join_consumer("scheduler", scheduler).await;
            // Only now is no request left that could append to the log.
            let _ = drain.send(true);
            let result = scheduled.and(join_consumer("bronze loader", loader).await);
            let result = result.and(join_consumer("stream processor", stream).await);
            if let Some(log) = log {
                log.close();
            }
            result
        });
        Ok(Server {
            addr,
            dashboard_addr,
            stop,
            task,
            signals,
        })
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the server has shut down (after `stop` or a signal).
    pub async fn wait(self) -> Result<()> {
        self.task
            .await
            .map_err(|e| CliError::Runtime(format!("server task failed: {e}")))?
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down cleanly.
    pub async fn run_until_signal(mut self) -> Result<()> {
        self.signals.recv().await;
        tracing::info!("shutting down: draining requests and committing bronze");
        self.stop();
        self.wait().await
    }
}

async fn bind(address: &str, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| CliError::Runtime(format!("cannot listen on {address}{what}: {e}")))
}

/// The dashboard and `/api/*` have no login: on an address other machines
/// reach, they publish every figure. Often unintended: `listen` is opened
/// for browsers' SDKs and the dashboard comes along.
fn warn_if_public(dashboard: Option<SocketAddr>, separate: bool) {
    let Some(at) = dashboard.filter(|a| !a.ip().is_loopback()) else {
        return;
    };
    if separate {
        tracing::warn!(
            "the dashboard and /api/* are served on {at} (dashboard_listen), not a loopback \
             address: whoever reaches it reads all analytics; set dashboard_listen to a \
             127.0.0.1 address and put a proxy with its own login in front to share it"
        );
    } else {
        tracing::warn!(
            "the dashboard and /api/* are served on {at} with ingestion, not a loopback \
             address: whoever reaches it reads all analytics; to keep them private, set \
             dashboard_listen = \"127.0.0.1:8081\" in the config (or --dashboard-listen) \
             and only /v1/*, /health, /ready and /metrics stay on {at}"
        );
    }
}

/// Runs one of the log's consumers. A failure is said at once, not only at
/// shutdown: ingest goes on without it.
fn spawn_consumer<E>(
    failed: &'static str,
    run: impl Future<Output = std::result::Result<(), E>> + Send + 'static,
) -> JoinHandle<Result<()>>
where
    E: std::fmt::Display + Send + 'static,
    CliError: From<E>,
{
    tokio::spawn(async move {
        let result = run.await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "{failed}");
        }
        result.map_err(CliError::from)
    })
}

async fn join_consumer(role: &str, task: Option<JoinHandle<Result<()>>>) -> Result<()> {
    match task {
        None => Ok(()),
        Some(task) => task
            .await
            .unwrap_or_else(|e| Err(CliError::Runtime(format!("{role} panicked: {e}")))),
    }
}

/// Ctrl-C and SIGTERM handlers, installed when created (not when first
/// awaited), so no signal between start-up and the wait is lost.
struct Signals {
    #[cfg(unix)]
    unix: Vec<tokio::signal::unix::Signal>,
}

impl Signals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = [SignalKind::interrupt(), SignalKind::terminate()]
                .into_iter()
                .filter_map(|kind| signal(kind).ok())
                .collect();
            Signals { unix }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if self.unix.is_empty() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            let waits = self.unix.iter_mut().map(|s| Box::pin(s.recv()));
            futures::future::select_all(waits).await;
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
