//! The HTTP API behind the dashboard: product metrics from the gold tables,
//! realtime figures from the stream processor, pipeline health from the run
//! store and the Delta logs, the admin actions that need the admin token, and
//! the dashboard page itself. Every route is documented in `docs/api.md`.

mod admin;
mod auth;
pub mod dashboard;
mod error;
pub mod hosts;
pub mod panels;
pub mod range;
mod routes;
pub mod snapshot;

use std::sync::Arc;

use strata_core::Config;
use strata_lake::Lake;
use strata_orchestrator::RunStore;
use strata_stream::view::RealtimeHandle;

pub use error::{Error, Result};
pub use routes::router;

use panels::{active_users, experiments, funnels, pipeline, retention, sessions};
use snapshot::Cached;

/// What the routes share: the config, the lake and its cached gold tables,
/// and the roles of this process they may ask (run store, stream processor).
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    lake: Lake,
    store: Option<RunStore>,
    realtime: Option<RealtimeHandle>,
    daily_active: Cached<active_users::DailyActive>,
    retention: Cached<retention::Cohorts>,
    funnels: Cached<funnels::FunnelDaily>,
    experiments: Cached<experiments::Results>,
    sessions: Cached<sessions::Sessions>,
    quarantine: Cached<pipeline::Quarantine>,
    tables: pipeline::Tables,
    sources: panels::sources::Sources,
    /// `POST /api/sql` calls running at once (`sql.max_concurrent_queries`).
    sql_slots: Arc<tokio::sync::Semaphore>,
}

/// Builds an [`Api`]: the run store and the realtime view are there only
/// when this process runs the roles that own them.
pub struct ApiBuilder {
    config: Config,
    store: Option<RunStore>,
    realtime: Option<RealtimeHandle>,
}

impl Api {
    pub fn builder(config: Config) -> ApiBuilder {
        ApiBuilder {
            config,
            store: None,
            realtime: None,
        }
    }
}

impl ApiBuilder {
    pub fn with_store(mut self, store: RunStore) -> Self {
        self.store = Some(store);
        self
    }

    pub fn with_realtime(mut self, realtime: RealtimeHandle) -> Self {
        self.realtime = Some(realtime);
        self
    }

    pub fn build(self) -> Api {
        let lake = Lake::new(self.config.lake_dir());
        let sql_slots = Arc::new(tokio::sync::Semaphore::new(
            self.config.sql.max_concurrent_queries,
        ));
        Api {
            inner: Arc::new(Inner {
                lake,
                config: self.config,
                store: self.store,
                realtime: self.realtime,
                daily_active: Cached::default(),
                retention: Cached::default(),
                funnels: Cached::default(),
                experiments: Cached::default(),
                sessions: Cached::default(),
                quarantine: Cached::default(),
                tables: pipeline::Tables::default(),
                sources: panels::sources::Sources::default(),
                sql_slots,
            }),
        }
    }
}
