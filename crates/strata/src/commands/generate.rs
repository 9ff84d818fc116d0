//! `strata generate`: the synthetic shop app to a file or to a collector.

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use strata_generate::{Generated, Generator, GeneratorConfig};
use strata_wire::WireFormat;
use strata_wire::avro::MessageFileWriter;

use crate::cli::GenerateArgs;
use crate::error::{CliError, Result};

pub async fn run(args: GenerateArgs) -> Result<()> {
    let start = args
        .start
        .unwrap_or_else(|| (Utc::now() - chrono::Duration::days(args.days as i64)).date_naive());
    let generator = Generator::new(GeneratorConfig {
        seed: args.seed,
        users: args.users,
        start,
        days: Some(args.days),
        ..GeneratorConfig::default()
    });
    match (&args.out, &args.target) {
        (Some(path), None) => write_file(generator, path, args.format, args.batch_size),
        (None, Some(target)) => {
            let key = args.write_key.clone().unwrap_or_default();
            let poster = Poster::new(target, &key)?.with_format(args.format);
            let progress = progress_bar();
            let stats = poster
                .send_all(
                    generator,
                    args.rate,
                    args.batch_size,
                    Pacing::Replay,
                    &progress,
                )
                .await?;
            progress.finish_and_clear();
            println!(
                "sent {} messages in {} requests: {} accepted, {} rejected",
                stats.messages, stats.requests, stats.accepted, stats.rejected
            );
            Ok(())
        }
        _ => Err(CliError::Usage(
            "strata generate needs --out FILE or --target URL --write-key K".into(),
        )),
    }
}

/// NDJSON; length-delimited `strata.v1.Batch` messages of `batch_size`
/// messages each; or one Avro container file.
fn write_file(
    generator: Generator,
    path: &std::path::Path,
    format: WireFormat,
    batch_size: usize,
) -> Result<()> {
    let sink: Box<dyn Write> = if path.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(path)
            .map_err(|e| CliError::Runtime(format!("cannot create {}: {e}", path.display())))?;
        Box::new(file)
    };
    let mut out = std::io::BufWriter::new(sink);
    let progress = progress_bar();
    let mut count = 0u64;
    let tick = |count: &mut u64| {
        *count += 1;
        if count.is_multiple_of(10_000) {
            progress.set_position(*count);
        }
    };
    match format {
        WireFormat::Avro => {
            let mut avro = MessageFileWriter::new(&mut out);
            for Generated { message, .. } in generator {
                avro.append(&message).map_err(CliError::runtime)?;
                tick(&mut count);
            }
            avro.finish().map_err(CliError::runtime)?;
        }
        WireFormat::Protobuf => {
            let mut pending = Vec::new();
            for Generated { message, .. } in generator {
                pending.push(message);
                if pending.len() >= batch_size.max(1) {
                    write_protobuf(&mut out, &pending)?;
                    pending.clear();
                }
                tick(&mut count);
            }
            if !pending.is_empty() {
                write_protobuf(&mut out, &pending)?;
            }
        }
        WireFormat::Json => {
            for Generated { message, .. } in generator {
                serde_json::to_writer(&mut out, &message).map_err(CliError::runtime)?;
                out.write_all(b"\n").map_err(CliError::runtime)?;
                tick(&mut count);
            }
        }
    }
    out.flush().map_err(CliError::runtime)?;
    progress.finish_and_clear();
    eprintln!("wrote {count} messages to {}", path.display());
    Ok(())
}

fn write_protobuf(out: &mut impl Write, messages: &[Value]) -> Result<()> {
    let framed =
        strata_wire::protobuf::encode_batch_delimited(messages).map_err(CliError::runtime)?;
    out.write_all(&framed).map_err(CliError::runtime)
}

pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} messages ({per_sec}) {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SendStats {
    pub messages: u64,
    pub requests: u64,
    pub accepted: u64,
    pub rejected: u64,
}

/// Posts `/v1/batch` requests to a collector, retrying 503s and connection
/// errors so that a busy collector slows the sender instead of losing data.
#[derive(Clone)]
pub struct Poster {
    client: reqwest::Client,
    url: String,
    auth: String,
    format: WireFormat,
}

impl Poster {
    pub fn new(target: &str, write_key: &str) -> Result<Self> {
        use base64::Engine;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(16)
            .build()
            .map_err(CliError::runtime)?;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"))
        );
        Ok(Self {
            client,
            url: format!("{}/v1/batch", target.trim_end_matches('/')),
            auth,
            format: WireFormat::Json,
        })
    }

    /// Sends batches in this wire format.
    pub fn with_format(mut self, format: WireFormat) -> Self {
        self.format = format;
        self
    }

    pub async fn post(&self, messages: Vec<Value>) -> Result<(u64, u64)> {
        let body = self
            .format
            .encode_batch(&messages, None)
            .map_err(CliError::runtime)?;
        let mut delay = Duration::from_millis(50);
        for _ in 0..20 {
            let response = self
                .client
                .post(&self.url)
                .header("content-type", self.format.content_type())
                .header("authorization", &self.auth)
                .body(body.clone())
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => {
                    let bytes = r.bytes().await.map_err(CliError::runtime)?;
                    let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    return Ok((
                        v["accepted"].as_u64().unwrap_or(0),
                        v["rejected"].as_u64().unwrap_or(0),
                    ));
                }
                Ok(r) if r.status().as_u16() == 503 => {}
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    return Err(CliError::Runtime(format!(
                        "collector answered {status}: {text}"
                    )));
                }
                Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {}
                Err(e) => return Err(CliError::runtime(e)),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(CliError::Runtime(format!(
            "collector at {} kept refusing requests",
            self.url
        )))
    }

    /// Sends everything the generator yields. Replayed messages go out at
    /// once with `sentAt` moved to now while keeping the device's clock
    /// offset, so the collector's skew correction recovers their true event
    /// time. With `Pacing::Live`, messages due in the future wait for their
    /// send time instead.
    pub async fn send_all(
        &self,
        generator: impl Iterator<Item = Generated> + Send,
        rate: u64,
        batch_size: usize,
        pacing: Pacing,
        progress: &ProgressBar,
    ) -> Result<SendStats> {
        let batch_size = batch_size.max(1);
        let started = Instant::now();
        let mut stats = SendStats::default();
        let mut batches = futures::stream::iter(Batches::new(generator, batch_size, pacing))
            .then(|batch| async move {
                if let Some(due) = batch.due {
                    let wait = (due - Utc::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(wait).await;
                }
                batch.messages
            })
            .map(|messages| {
                let poster = self.clone();
                async move { poster.post(messages).await }
            })
            .buffered(4)
            .boxed();
        while let Some(result) = batches.next().await {
            let (accepted, rejected) = result?;
            stats.requests += 1;
            stats.accepted += accepted;
            stats.rejected += rejected;
            stats.messages += accepted + rejected;
            progress.set_position(stats.messages);
            if rate > 0 {
                let expected = Duration::from_secs_f64(stats.messages as f64 / rate as f64);
                if let Some(ahead) = expected.checked_sub(started.elapsed()) {
                    tokio::time::sleep(ahead).await;
                }
            }
        }
        Ok(stats)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Everything now, as a replay of history.
    Replay,
    /// The past now, the future when it is due.
    Live,
}

struct Batch {
    messages: Vec<Value>,
    /// Set for live traffic: when the last message of the batch is due.
    due: Option<DateTime<Utc>>,
}

/// Groups generated messages into requests; live messages go out alone-ish
/// (in the batch of whatever is due at the same moment) so they are not held
/// back waiting for a full batch.
struct Batches<I: Iterator> {
    inner: std::iter::Peekable<I>,
    size: usize,
    pacing: Pacing,
}

impl<I: Iterator<Item = Generated>> Batches<I> {
    fn new(inner: I, size: usize, pacing: Pacing) -> Self {
        Self {
            inner: inner.peekable(),
            size,
            pacing,
        }
    }
}

impl<I: Iterator<Item = Generated>> Iterator for Batches<I> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let now = Utc::now();
        let first = self.inner.next()?;
        let live = self.pacing == Pacing::Live && first.send_at > now;
        let mut due = first.send_at;
        let mut messages = vec![prepare(first, now, live)];
        while messages.len() < self.size {
            let Some(next) = self.inner.peek() else { break };
            // Live traffic leaves when due: batch only what is due together.
            if live && next.send_at > due + chrono::Duration::milliseconds(200) {
                break;
            }
            if !live && self.pacing == Pacing::Live && next.send_at > now {
                break;
            }
            let Some(next) = self.inner.next() else { break };
            due = next.send_at;
            messages.push(prepare(next, now, live));
        }
        Some(Batch {
            messages,
            due: live.then_some(due),
        })
    }
}

/// A generated message as a replay of history sends it at `now`.
pub(crate) fn replayed(generated: Generated, now: DateTime<Utc>) -> Value {
    prepare(generated, now, false)
}

fn prepare(generated: Generated, now: DateTime<Utc>, live: bool) -> Value {
    let Generated {
        send_at,
        mut message,
    } = generated;
    if live {
        return message;
    }
    // Replaying history: keep the device's clock offset, move the send to now.
    if let Some(sent) = message
        .get("sentAt")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    {
        let offset = sent.with_timezone(&Utc) - send_at;
        let replayed = now + offset;
        message["sentAt"] =
            Value::String(replayed.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    message
}
