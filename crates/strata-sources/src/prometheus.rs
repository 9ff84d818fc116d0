//! One process-wide Prometheus recorder behind the `metrics` facade, so every
//! crate records with `metrics::counter!` and `/metrics` renders them all.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by an embedding
        // application); then this handle simply renders nothing of ours.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}
