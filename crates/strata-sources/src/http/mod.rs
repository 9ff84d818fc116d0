//! The HTTP source (SPEC §2, `kind = "http"`): a Segment-compatible tracking
//! API that answers only after every accepted and rejected message of a
//! request is durable in the log.

mod auth;
mod body;
mod ingest;
mod routes;
mod serve;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use strata_core::config::{CollectorConfig, SourceConfig};
use strata_log::Log;
use tokio::sync::Semaphore;

use crate::producer::Producer;
use crate::prometheus;

pub use routes::router;
pub use serve::serve;

/// The keys of an `[[sources]]` entry of kind `http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub write_key: String,
}

pub const KIND: crate::Kind = crate::Kind {
    name: strata_core::config::HTTP_KIND,
    check: |source| crate::parse_options::<HttpConfig>(source).map(|_| ()),
    build: None,
};

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct Collector {
    inner: Arc<Inner>,
}

struct Inner {
    sources_by_key: HashMap<String, String>,
    producer: Producer,
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
            .filter_map(|s| Some((s.write_key()?.to_string(), s.name.clone())))
            .collect();
        let inflight = Arc::new(Semaphore::new(limits.max_inflight_requests.max(1)));
        Self {
            inner: Arc::new(Inner {
                sources_by_key,
                producer: Producer::new(log),
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
