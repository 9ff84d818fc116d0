//! The HTTP collector (SPEC §2): a Segment-compatible tracking API that answers
//! only after every accepted and rejected message of a request is durable in
//! the log.

mod auth;
mod body;
mod ingest;
pub mod prometheus;
mod routes;
mod serve;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_core::config::{CollectorConfig, SourceConfig};
use strata_log::Log;
use tokio::sync::Semaphore;

pub use routes::router;
pub use serve::serve;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct Collector {
    inner: Arc<Inner>,
}

struct Inner {
    sources_by_key: HashMap<String, String>,
    log: Arc<dyn Log>,
    limits: CollectorConfig,
    inflight: Arc<Semaphore>,
    ready: AtomicBool,
}

impl Collector {
    pub fn new(sources: &[SourceConfig], log: Arc<dyn Log>, limits: CollectorConfig) -> Self {
        // Install the recorder before anything is counted, not at first scrape.
        prometheus::handle();
        let sources_by_key = sources
            .iter()
            .map(|s| (s.write_key.clone(), s.name.clone()))
            .collect();
        let inflight = Arc::new(Semaphore::new(limits.max_inflight_requests.max(1)));
        Self {
            inner: Arc::new(Inner {
                sources_by_key,
                log,
                limits,
                inflight,
                ready: AtomicBool::new(true),
            }),
        }
    }

    /// Readiness goes false when shutdown starts, so load balancers drain us.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    fn source_for_key(&self, key: &str) -> Option<&str> {
        self.inner.sources_by_key.get(key).map(String::as_str)
    }
}
