//! The landing page at `/`: what is running and where to look.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

pub fn router() -> Router {
    Router::new().route("/", get(|| async { Html(PAGE) }))
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Strata</title>
<style>body{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;line-height:1.5;color:#1f2933}
code{background:#f0f4f8;padding:.1rem .3rem;border-radius:3px}</style></head>
<body><h1>Strata</h1>
<p>The collector is running. Send Segment-compatible events to <code>/v1/track</code>,
<code>/v1/batch</code> and the other <code>/v1/*</code> endpoints.</p>
<ul>
<li><a href="/health">/health</a> and <a href="/ready">/ready</a></li>
<li><a href="/api/realtime?minutes=15">/api/realtime</a>: events and active users per minute, seconds behind</li>
<li><a href="/metrics">/metrics</a> (Prometheus)</li>
</ul>
<p>Query the tables with <code>strata sql "select count(*) from bronze.events"</code>.</p>
</body></html>"#;
