//! `strata bench attacks`: the hostile inputs of the black-box audit
//! (issue 23), sent one after another over loopback to one `strata serve`
//! child running every role. For each attack: the requests sent and the
//! statuses they got, the size of the answers that used to blow up, the
//! child's resident memory before and at its peak (`VmHWM`, reset before
//! each attack through `/proc/<pid>/clear_refs`), and how many `GET /health`
//! calls, one every 100 ms, failed meanwhile. Exits 1 when a health check
//! failed or the child died or did not exit 0 on SIGTERM.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use strata_lake::Lake;
use strata_lake::bronze::loaded_records;

use super::bench::{ChildServer, WRITE_KEY, free_port, memory_mib, peak_rss_mib, wait_ready};
use crate::cli::{BenchAttacksArgs, GlobalArgs};
use crate::error::{CliError, Result};

const ADMIN_TOKEN: &str = "admin_bench";
/// Connections that send an attack's requests side by side.
const CONNECTIONS: usize = 8;

struct Target {
    base: String,
    client: reqwest::Client,
    lake: Lake,
    /// Bound on each attack's sending, and on each wait that follows it.
    limit: Duration,
}

/// One request of an attack: a GET, a post with the write key, or a post
/// with the admin token.
enum Req {
    Get(&'static str),
    Collect(&'static str, Bytes),
    Admin(&'static str, Bytes),
}

/// What the requests of an attack got back.
#[derive(Default)]
struct Tally {
    sent: usize,
    statuses: BTreeMap<String, usize>,
    /// The beginnings of the first few distinct answers of each status
    /// other than 200.
    said: BTreeMap<String, Vec<String>>,
    max_bytes: usize,
    /// The largest answer of the calls that used to answer too much.
    answer_bytes: Option<usize>,
    note: Option<String>,
}

impl Tally {
    fn record(&mut self, (status, bytes, text): (String, usize, String)) {
        self.sent += 1;
        self.max_bytes = self.max_bytes.max(bytes);
        if status != "200" {
            self.say(status.clone(), text);
        }
        *self.statuses.entry(status).or_default() += 1;
    }

    fn say(&mut self, status: String, text: String) {
        let said = self.said.entry(status).or_default();
        if said.len() < 3 && !said.contains(&text) {
            said.push(text);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (status, texts) in other.said {
            texts
                .into_iter()
                .for_each(|text| self.say(status.clone(), text));
        }
        self.max_bytes = self.max_bytes.max(other.max_bytes);
    }

    /// With `probes` merged in, their largest answer as the answer bytes.
    fn probed(mut self, probes: Tally) -> Self {
        self.answer_bytes = Some(probes.max_bytes);
        self.merge(probes);
        self
    }
}

/// The attacks in the order they are run: the backfill last, so that runs
/// queued by a server that accepted it cannot slow down the others.
const ATTACKS: [&str; 7] = [
    "SQL `select 1+1+…+1`, 5,000 terms",
    "distinct 30 KB event names, then /api/realtime",
    "distinct 250-byte event names, then /api/realtime",
    "SQL `select * from generate_series(1, 20000000)`",
    "500 KB `{\"batch\":[1,1,…]}` (250,000 items)",
    "`ajs-`, upper-case and numeric event ids, then silver.events",
    "backfills from 1900-01-01, from 1970-01-01 and of 366 days, then /api/runs",
];

type Attack<'a> = Pin<Box<dyn Future<Output = Tally> + 'a>>;

pub async fn run(global: &GlobalArgs, args: BenchAttacksArgs) -> Result<()> {
    let pick = |full: usize, quick: usize| if args.quick { quick } else { full };
    let (n, calls, id_events, probes) = (
        pick(20_000, 200),
        pick(10, 2),
        pick(1_000_000, 3_000),
        pick(3, 1),
    );
    let limit = Duration::from_secs(pick(300, 60) as u64);
    let dir = std::env::temp_dir().join(format!("strata-attacks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port()?;
    let env = [("STRATA_ADMIN_TOKEN", ADMIN_TOKEN)];
    let mut child = ChildServer::spawn_env(&dir, port, global.config.as_deref(), &[], &env)?;
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await?;
    let t = Target {
        client: reqwest::Client::builder()
            .timeout(limit)
            .build()
            .map_err(CliError::runtime)?,
        base,
        lake: Lake::new(dir.join("lake")),
        limit,
    };
    let chain = format!("select {}", vec!["1"; 5_000].join("+"));
    let series = "select * from generate_series(1, 20000000)".to_string();
    println!(
        "each SQL query and the batch of 1s sent {calls} times; {} track calls per name size; \
         {} events with odd ids; /api/realtime and /api/runs read {probes} times after their attacks",
        thousands(n),
        thousands(id_events)
    );
    let attacks: [Attack<'_>; 7] = [
        Box::pin(sql(&t, calls, chain)),
        Box::pin(names(&t, n, 30_000, probes)),
        Box::pin(names(&t, n, 250, probes)),
        Box::pin(sql(&t, calls, series)),
        Box::pin(ones(&t, calls)),
        Box::pin(ids(&t, id_events)),
        Box::pin(backfill(&t, probes)),
    ];
    println!(
        "| attack | requests | statuses | answer bytes | RSS before | peak RSS | /health failed | seconds |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|");
    let (mut health_failures, mut said) = (0, Vec::new());
    for (name, attack) in ATTACKS.into_iter().zip(attacks) {
        // Writing 5 resets the peak (`VmHWM`) to the present resident set.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let before = memory_mib(&pid.to_string(), "VmRSS:");
        let stop = Arc::new(AtomicBool::new(false));
        let health = watch_health(&t, stop.clone());
        let started = Instant::now();
        let tally = attack.await;
        let seconds = started.elapsed().as_secs_f64();
        let peak = peak_rss_mib(pid);
        stop.store(true, Ordering::Relaxed);
        let (checks, failed) = health.await.unwrap_or((0, 1));
        health_failures += failed;
        let statuses: Vec<String> = tally
            .statuses
            .iter()
            .map(|(s, n)| format!("{s} ×{}", thousands(*n)))
            .collect();
        let bytes = tally.answer_bytes.map_or("–".into(), thousands);
        println!(
            "| {name} | {} | {} | {bytes} | {before:.0} MiB | {peak:.0} MiB | {failed} of {checks} | {seconds:.1} |",
            thousands(tally.sent),
            statuses.join(", "),
        );
        for (status, texts) in tally.said {
            said.extend(texts.iter().map(|text| format!("{name}: {status}: {text}")));
        }
        said.extend(tally.note.map(|note| format!("{name}: {note}")));
        if !child.running() {
            break;
        }
    }
    println!();
    for line in said {
        println!("- {line}");
    }
    let alive = child.running();
    println!("child alive after the attacks: {alive}");
    let stop_started = Instant::now();
    let stopped = child.terminate();
    match &stopped {
        Ok(()) => println!(
            "SIGTERM: exit 0 in {:.1} s",
            stop_started.elapsed().as_secs_f64()
        ),
        Err(e) => println!("SIGTERM: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    if health_failures > 0 || !alive || stopped.is_err() {
        return Err(CliError::Runtime(format!(
            "the server did not hold: {health_failures} /health checks failed, alive after the attacks: {alive}, clean stop: {}",
            stopped.is_ok()
        )));
    }
    Ok(())
}

/// `GET /health` every 100 ms until `stop`: (calls, failures), a call that
/// fails or takes more than 2 s being a failure.
fn watch_health(t: &Target, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    let (client, url) = (t.client.clone(), format!("{}/health", t.base));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut checks, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let answer = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            checks += 1;
            failed += u64::from(!answer.is_ok_and(|r| r.status().is_success()));
        }
        (checks, failed)
    })
}

/// `count` requests made by `make(i)`, over `connections` connections,
/// until done or the target's time limit.
async fn send(
    t: &Target,
    count: usize,
    connections: usize,
    make: impl Fn(usize) -> Req + Send + Sync + 'static,
) -> Tally {
    let (make, next) = (Arc::new(make), Arc::new(AtomicUsize::new(0)));
    let deadline = Instant::now() + t.limit;
    let mut workers = Vec::new();
    for _ in 0..connections.min(count) {
        let (make, next, client, base) =
            (make.clone(), next.clone(), t.client.clone(), t.base.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() > deadline {
                    return tally;
                }
                tally.record(call(&client, &base, make(i)).await);
            }
        }));
    }
    let mut total = Tally::default();
    for worker in workers {
        if let Ok(tally) = worker.await {
            total.merge(tally);
        }
    }
    total
}

/// One request: its status (or `timeout`, `error`), the bytes of its
/// answer, and the answer's beginning.
async fn call(client: &reqwest::Client, base: &str, req: Req) -> (String, usize, String) {
    let post = |path: &str, body: Bytes| {
        let post = client.post(format!("{base}{path}"));
        post.header("content-type", "application/json").body(body)
    };
    let request = match req {
        Req::Get(path) => client.get(format!("{base}{path}")),
        Req::Collect(path, body) => post(path, body).basic_auth(WRITE_KEY, Some("")),
        Req::Admin(path, body) => post(path, body).bearer_auth(ADMIN_TOKEN),
    };
    let mut answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) if e.is_timeout() => return ("timeout".into(), 0, e.to_string()),
        Err(e) => return ("error".into(), 0, e.to_string()),
    };
    let (mut bytes, mut text) = (0, Vec::new());
    // Counted as it arrives, not held: such answers were 600 MB.
    while let Ok(Some(chunk)) = answer.chunk().await {
        bytes += chunk.len();
        text.extend_from_slice(&chunk[..chunk.len().min(400usize.saturating_sub(text.len()))]);
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    (answer.status().as_str().to_string(), bytes, text)
}

/// The bytes of a JSON value.
fn body(value: Value) -> Bytes {
    value.to_string().into()
}

async fn sql(t: &Target, calls: usize, query: String) -> Tally {
    let query = body(json!({ "query": query }));
    let mut tally = send(t, calls, 1, move |_| Req::Admin("/api/sql", query.clone())).await;
    tally.answer_bytes = Some(tally.max_bytes);
    tally
}

/// `count` track calls, each with its own event name of `bytes` bytes, then
/// (once the stream has taken them in) the realtime answer.
async fn names(t: &Target, count: usize, bytes: usize, probes: usize) -> Tally {
    let tally = send(t, count, CONNECTIONS, move |i| {
        let name = format!("{i:08}{}", "n".repeat(bytes.saturating_sub(8)));
        Req::Collect(
            "/v1/track",
            body(json!({ "userId": "attacker", "event": name })),
        )
    })
    .await;
    let events = move || async move {
        metric(t, "strata_stream_events_total")
            .await
            .map(|n| n as u64)
    };
    settle(t.limit, events).await;
    let mut tally = tally.probed(send(t, probes, 1, |_| Req::Get("/api/realtime")).await);
    let dropped = metric(t, "strata_stream_dropped_total")
        .await
        .unwrap_or(0.0);
    let pipeline = get_json(t, "/api/pipeline").await.unwrap_or_default();
    let reasons = pipeline["quarantine"]["by_reason"].as_array();
    let reasons: Vec<String> = reasons
        .into_iter()
        .flatten()
        .map(|r| format!("{} {}", r["reason"].as_str().unwrap_or_default(), r["rows"]))
        .collect();
    tally.note = Some(format!(
        "{dropped} events dropped by the realtime path (window bounds); quarantined so far: {}",
        reasons.join(", ")
    ));
    tally
}

/// The answer of a GET, when it came.
async fn get(t: &Target, path: &str) -> Option<Bytes> {
    let answer = t.client.get(format!("{}{path}", t.base)).send().await;
    answer.ok()?.bytes().await.ok()
}

async fn get_json(t: &Target, path: &str) -> Option<Value> {
    serde_json::from_slice(&get(t, path).await?).ok()
}

/// One unlabelled value of `/metrics`.
async fn metric(t: &Target, name: &str) -> Option<f64> {
    let text = get(t, "/metrics").await?;
    let text = String::from_utf8_lossy(&text);
    let mut lines = text.lines();
    let line = lines.find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ')))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Waits until `read` answers the same for 3 s in a row, or `limit`.
async fn settle<F: Future<Output = Option<u64>>>(limit: Duration, read: impl Fn() -> F) {
    let (deadline, mut last, mut same) = (Instant::now() + limit, None, 0);
    while Instant::now() < deadline && same < 6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = read().await;
        same = if now.is_some() && now == last {
            same + 1
        } else {
            0
        };
        last = now;
    }
}

/// `{"batch":[1,1,…]}` of 250,000 items: 500,011 bytes.
async fn ones(t: &Target, calls: usize) -> Tally {
    let body = Bytes::from(format!("{{\"batch\":[{}1]}}", "1,".repeat(249_999)));
    send(t, calls, 1, move |_| {
        Req::Collect("/v1/batch", body.clone())
    })
    .await
}

/// `events` tracks in batches of 100, with ids the batch index must not
/// keep as text (`ajs-…`, upper-case UUIDs, numbers); then, once bronze
/// has them, silver.events is built for today through `POST /api/runs`.
async fn ids(t: &Target, events: usize) -> Tally {
    let id = |j: usize| {
        let h = (j as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        match j % 3 {
            0 => json!(format!("ajs-next-{h:032x}")),
            1 => json!(uuid::Uuid::from_u128(h).to_string().to_uppercase()),
            _ => json!(1_000_000_000_000u64 + j as u64),
        }
    };
    let loaded_before = loaded_records(&t.lake, 4).await.unwrap_or(0);
    let mut tally = send(t, events.div_ceil(100), CONNECTIONS, move |i| {
        let batch: Vec<Value> = (i * 100..(i * 100 + 100).min(events))
            .map(|j| {
                let (user, id) = (format!("u{}", j % 1000), id(j));
                json!({ "type": "track", "userId": user, "event": "Id Probe", "messageId": id })
            })
            .collect();
        Req::Collect("/v1/batch", body(json!({ "batch": batch })))
    })
    .await;
    let target = loaded_before + events as u64;
    settle(t.limit, move || async move {
        let loaded = loaded_records(&t.lake, 4).await.ok()?;
        (loaded >= target).then_some(loaded)
    })
    .await;
    let now = chrono::Utc::now();
    let (today, asked) = (
        now.date_naive().to_string(),
        now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    );
    let run = body(json!({ "model": "silver.events", "date": today }));
    tally.merge(send(t, 1, 1, move |_| Req::Admin("/api/runs", run.clone())).await);
    let started = Instant::now();
    let mut note = format!("silver.events {today} did not finish within {:?}", t.limit);
    while started.elapsed() < t.limit {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(report) = get_json(t, "/api/runs?model=silver.events").await else {
            continue;
        };
        let partitions = report["models"][0]["partitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let finished = partitions.iter().find(|p| {
            let state = p["state"].as_str().unwrap_or_default();
            p["partition"] == today.as_str()
                && (state == "succeeded" || state == "failed")
                && p["finished_at"]
                    .as_str()
                    .is_some_and(|f| f > asked.as_str())
        });
        if let Some(p) = finished {
            let error = p["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            let (state, took) = (
                p["state"].as_str().unwrap_or_default(),
                started.elapsed().as_secs_f64(),
            );
            note = format!("silver.events {today} {state} {took:.1} s after it was queued{error}");
            break;
        }
    }
    tally.note = Some(note);
    tally
}

/// Backfills of every model from 1900, from 1970, and over the last 366
/// days (the most one request may ask for), then the runs they queued.
async fn backfill(t: &Target, probes: usize) -> Tally {
    let to = chrono::Utc::now().date_naive();
    let year = (to - chrono::Days::new(365)).to_string();
    let asked: Vec<Bytes> = ["1900-01-01", "1970-01-01", &year]
        .iter()
        .map(|from| body(json!({ "model": "all", "from": from, "to": to.to_string() })))
        .collect();
    let count = asked.len();
    let tally = send(t, count, 1, move |i| {
        Req::Admin("/api/backfill", asked[i].clone())
    })
    .await;
    tally.probed(send(t, probes, 1, |_| Req::Get("/api/runs")).await)
}

/// `20000` as `20,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let groups = digits.as_bytes().rchunks(3).rev();
    let groups: Vec<_> = groups.map(|g| String::from_utf8_lossy(g)).collect();
    groups.join(",")
}
