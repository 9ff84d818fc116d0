//! The routes: reads open to anyone who can reach the listen address,
//! admin actions behind the admin token.

use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::panels::{active_users, experiments, funnels, pipeline, retention, sessions};
use crate::range::{DateRange, RangeParams};
use crate::{Api, admin, dashboard};

pub fn router(api: Api) -> Router {
    let realtime = match api.inner.realtime.clone() {
        Some(handle) => strata_stream::api::router(handle),
        None => Router::new().route(
            "/api/realtime",
            get(|| async {
                Error::NotFound(
                    "realtime figures come from the stream role, which this process does not run"
                        .into(),
                )
            }),
        ),
    };
    let hosts =
        crate::hosts::AllowedHosts::new(&api.inner.config.allowed_hosts, &api.inner.config.listen);
    Router::new()
        .route("/api/active-users", get(active_users))
        .route("/api/retention", get(retention))
        .route("/api/funnels", get(funnels))
        .route("/api/experiments", get(experiments))
        .route("/api/sessions", get(sessions))
        .route("/api/pipeline", get(pipeline))
        .route("/api/runs", get(runs).post(admin::run))
        .route("/api/backfill", post(admin::backfill))
        .route("/api/sql", post(admin::sql))
        .with_state(api)
        .merge(realtime)
        .merge(dashboard::router())
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            crate::hosts::check,
        ))
}

/// The range asked for, its open ends anchored at the newest date that has
/// daily active users.
async fn range_of(api: &Api, params: &RangeParams) -> Result<DateRange> {
    let anchor: Option<NaiveDate> = if params.from.is_some() && params.to.is_some() {
        None
    } else {
        let lake = &api.inner.lake;
        api.inner
            .daily_active
            .get(lake)
            .await?
            .and_then(|t| t.last_date())
    };
    DateRange::resolve(params, anchor)
}

async fn active_users(
    State(api): State<Api>,
    Query(params): Query<RangeParams>,
) -> Result<Json<active_users::ActiveUsers>> {
    // The table is its own anchor: one look at its log, not two.
    let table = api.inner.daily_active.get(&api.inner.lake).await?;
    let anchor = table
        .as_deref()
        .and_then(active_users::DailyActive::last_date);
    let range = DateRange::resolve(&params, anchor)?;
    Ok(Json(active_users::answer(table.as_deref(), range)))
}

async fn retention(
    State(api): State<Api>,
    Query(params): Query<RangeParams>,
) -> Result<Json<retention::Retention>> {
    let range = range_of(&api, &params).await?;
    let table = api.inner.retention.get(&api.inner.lake).await?;
    Ok(Json(retention::answer(table.as_deref(), range)))
}

async fn funnels(
    State(api): State<Api>,
    Query(params): Query<RangeParams>,
) -> Result<Json<funnels::Funnels>> {
    let range = range_of(&api, &params).await?;
    let table = api.inner.funnels.get(&api.inner.lake).await?;
    let configured = api.inner.config.effective_funnels();
    Ok(Json(funnels::answer(table.as_deref(), &configured, range)))
}

async fn experiments(State(api): State<Api>) -> Result<Json<experiments::Experiments>> {
    let table = api.inner.experiments.get(&api.inner.lake).await?;
    Ok(Json(experiments::answer(table.as_deref())))
}

async fn sessions(
    State(api): State<Api>,
    Query(params): Query<RangeParams>,
) -> Result<Json<sessions::SessionsAnswer>> {
    let range = range_of(&api, &params).await?;
    let table = api.inner.sessions.get(&api.inner.lake).await?;
    Ok(Json(sessions::answer(table.as_deref(), range)))
}

async fn pipeline(State(api): State<Api>) -> Result<Json<pipeline::Pipeline>> {
    let now = SystemTime::now();
    let runs = match &api.inner.store {
        Some(store) => Some(pipeline::Runs::of(runs_report(&api, store).await?)),
        None => None,
    };
    let tables = api.inner.tables.list(&api.inner.lake, now).await;
    let quarantine = api
        .inner
        .quarantine
        .get(&api.inner.lake)
        .await?
        .map(|q| (*q).clone())
        .unwrap_or_default();
    let too_late = pipeline::TooLate {
        realtime: api.inner.realtime.as_ref().map(|handle| handle.too_late()),
    };
    Ok(Json(pipeline::Pipeline {
        generated_at: chrono::DateTime::<chrono::Utc>::from(now)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        runs,
        tables,
        quarantine,
        too_late,
    }))
}

async fn runs_report(
    api: &Api,
    store: &strata_orchestrator::RunStore,
) -> Result<strata_orchestrator::status::Report> {
    strata_orchestrator::status::report_for(&api.inner.config, store)
        .await
        .map_err(|e| Error::Unavailable(format!("run store unavailable: {e}")))
}

#[derive(Debug, Deserialize)]
struct RunsFilter {
    model: Option<String>,
    state: Option<String>,
}

/// The run store's report (`strata status --json`), narrowed to one model
/// or one state.
async fn runs(
    State(api): State<Api>,
    Query(filter): Query<RunsFilter>,
) -> Result<Json<strata_orchestrator::status::Report>> {
    let store = api.inner.store.as_ref().ok_or_else(|| {
        Error::NotFound(
            "this process has no run store (it runs neither the collector nor the scheduler role)"
                .into(),
        )
    })?;
    let mut report = runs_report(&api, store).await?;
    if let Some(model) = &filter.model {
        report.models.retain(|m| &m.model == model);
        if report.models.is_empty() {
            return Err(Error::NotFound(format!("unknown model {model:?}")));
        }
    }
    if let Some(state) = &filter.state {
        for m in &mut report.models {
            m.partitions.retain(|p| p.state.as_str() == state);
        }
    }
    Ok(Json(report))
}
