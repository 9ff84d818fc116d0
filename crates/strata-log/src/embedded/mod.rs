//! The embedded, file-based [`Log`]: one directory per partition holding
//! segment files, one writer thread per partition doing group commit.

mod partition;
mod retention;
mod segment;
mod writer;

use std::fs::{self, File, TryLockError};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;
use futures::future::{self, BoxFuture};
use tokio::sync::{oneshot, watch};

use self::partition::PartitionShared;
use self::retention::{ConsumerPositions, validate_consumer_name};
use self::writer::{AppendRequest, Writer, WriterShared};
use crate::{Log, LogEntry, LogError, MAX_RECORD_BYTES, Offset, Result};

pub use self::segment::{FRAME_HEADER_LEN, encode_frame};

const META_FILE: &str = "strata-log.meta";
/// The version of the log's layout: this file, the segment framing and the
/// consumers file. Bumped when any of them changes.
pub(crate) const LOG_FORMAT: u32 = 1;
const META_PREFIX: &str = "strata-log";
const LOCK_FILE: &str = "LOCK";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedLogConfig {
    /// Fixed when the log is created; reopening with another count fails.
    pub partitions: u32,
    /// A segment is closed and a new one started once it reaches this size.
    /// Retention deletes whole segments, so this is also its granularity.
    pub segment_bytes: u64,
    /// Consumers whose reported progress gates retention. With none,
    /// nothing is ever deleted. A consumer that has never reported holds
    /// back retention of every partition.
    pub consumers: Vec<String>,
    /// Turning this off voids the durability contract; for tests and
    /// throwaway data only.
    pub fsync: bool,
}

impl Default for EmbeddedLogConfig {
    fn default() -> Self {
        EmbeddedLogConfig {
            partitions: 4,
            segment_bytes: 64 << 20,
            consumers: Vec::new(),
            fsync: true,
        }
    }
}

impl EmbeddedLogConfig {
    fn validate(&self) -> Result<()> {
        if self.partitions == 0 {
            return Err(LogError::InvalidConfig(
                "partitions must be at least 1".into(),
            ));
        }
        if self.segment_bytes == 0 {
            return Err(LogError::InvalidConfig(
                "segment_bytes must be at least 1".into(),
            ));
        }
        for (i, name) in self.consumers.iter().enumerate() {
            validate_consumer_name(name)?;
            if self.consumers[..i].contains(name) {
                return Err(LogError::InvalidConfig(format!(
                    "consumer {name:?} is registered twice"
                )));
            }
        }
        Ok(())
    }
}

/// The embedded log. See the crate docs for the durability contract.
///
/// Dropping the last handle (or calling [`EmbeddedLog::close`]) completes the
/// appends already accepted, stops the writer threads and releases the
/// directory lock.
#[derive(Debug)]
pub struct EmbeddedLog {
    dir: PathBuf,
    config: EmbeddedLogConfig,
    partitions: Vec<PartitionHandle>,
    notify: Arc<watch::Sender<u64>>,
    fsyncs: Arc<AtomicU64>,
    consumers: Mutex<ConsumerPositions>,
    closed: AtomicBool,
    /// Held (and flock'ed) for as long as the log is open, so two instances
    /// never write the same directory.
    lock: Mutex<Option<File>>,
}

#[derive(Debug)]
struct PartitionHandle {
    shared: Arc<PartitionShared>,
    sender: RwLock<Option<mpsc::Sender<AppendRequest>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir`, recovering torn tails left by a
    /// crash. Does blocking IO.
    pub fn open(dir: impl AsRef<Path>, config: EmbeddedLogConfig) -> Result<Arc<EmbeddedLog>> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let created = !dir.exists();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let lock = acquire_lock(&dir)?;
        check_metadata(&dir, config.partitions, config.fsync)?;

        let (notify, _) = watch::channel(0u64);
        let shared = WriterShared {
            notify: Arc::new(notify),
            fsyncs: Arc::new(AtomicU64::new(0)),
            segment_bytes: config.segment_bytes,
            fsync: config.fsync,
        };
        let mut starts = Vec::with_capacity(config.partitions as usize);
        let mut partitions = Vec::with_capacity(config.partitions as usize);
        for id in 0..config.partitions {
            let (partition, start) = PartitionShared::open(&dir, id, config.fsync)?;
            let partition = Arc::new(partition);
            metrics::gauge!("strata_log_end_offset", "partition" => id.to_string())
                .set(start.next_offset as f64);
            starts.push(start);
            partitions.push(PartitionHandle {
                shared: partition,
                sender: RwLock::new(None),
                thread: Mutex::new(None),
            });
        }
        if config.fsync {
            // Make the directory entries leading to the segment files
            // durable; fsyncing a segment's data does not cover them.
            sync_dir(&dir)?;
            if created {
                let parent = match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                sync_dir(parent)?;
            }
        }
        let consumers =
            ConsumerPositions::load(&dir, &config.consumers, config.partitions, config.fsync)?;

        let log = EmbeddedLog {
            dir,
            config,
            partitions,
            notify: shared.notify.clone(),
            fsyncs: shared.fsyncs.clone(),
            consumers: Mutex::new(consumers),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
        };
        // On failure `log` is dropped, which stops the writers started so far.
        for (handle, start) in log.partitions.iter().zip(starts) {
            let (sender, receiver) = mpsc::channel();
            let writer = Writer::new(handle.shared.clone(), start, shared.clone());
            let thread = writer.spawn(receiver)?;
            *write_lock(&handle.sender) = Some(sender);
            *lock_mutex(&handle.thread) = Some(thread);
        }
        for partition in 0..log.config.partitions {
            log.apply_retention(partition);
        }
        tracing::info!(
            dir = %log.dir.display(),
            partitions = log.config.partitions,
            "opened embedded log"
        );
        Ok(Arc::new(log))
    }

    /// Completes the appends already accepted, then stops the writers and
    /// releases the directory. Later appends, reads and progress reports
    /// fail with [`LogError::Closed`]. Blocks until the writers are done;
    /// idempotent.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for handle in &self.partitions {
            // Dropping the sender lets the writer drain its queue and exit.
            write_lock(&handle.sender).take();
        }
        for handle in &self.partitions {
            let thread = lock_mutex(&handle.thread).take();
            if let Some(thread) = thread
                && thread.join().is_err()
            {
                tracing::error!(partition = handle.shared.id, "log writer thread panicked");
            }
        }
        lock_mutex(&self.lock).take();
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &EmbeddedLogConfig {
        &self.config
    }

    /// Number of fsync calls (files and directories) issued since open.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// The retention position last reported by a registered consumer
    /// (0 if it never reported).
    pub fn consumer_position(&self, consumer: &str, partition: u32) -> Result<Offset> {
        self.handle(partition)?;
        lock_mutex(&self.consumers).position(consumer, partition)
    }

    fn handle(&self, partition: u32) -> Result<&PartitionHandle> {
        self.partitions
            .get(partition as usize)
            .ok_or(LogError::UnknownPartition {
                partition,
                partitions: self.config.partitions,
            })
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(LogError::Closed);
        }
        Ok(())
    }

    fn enqueue(
        &self,
        partition: u32,
        records: Vec<Bytes>,
    ) -> Result<oneshot::Receiver<Result<Range<Offset>>>> {
        let handle = self.handle(partition)?;
        self.ensure_open()?;
        if let Some(record) = records.iter().find(|r| r.len() > MAX_RECORD_BYTES) {
            return Err(LogError::RecordTooLarge {
                len: record.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        let (reply, receiver) = oneshot::channel();
        let sender = read_lock(&handle.sender);
        let sender = sender.as_ref().ok_or(LogError::Closed)?;
        sender
            .send(AppendRequest { records, reply })
            .map_err(|_| LogError::Closed)?;
        Ok(receiver)
    }

    /// Deletes the closed segments of `partition` that every registered
    /// consumer has passed. Failures only delay deletion, so they are logged
    /// rather than returned.
    fn apply_retention(&self, partition: u32) {
        let Some(below) = lock_mutex(&self.consumers).retain_from(partition) else {
            return;
        };
        let Ok(handle) = self.handle(partition) else {
            return;
        };
        for segment in handle.shared.trim_below(below) {
            // Readers that already picked this segment keep reading through
            // their open handle; unlinking does not disturb them.
            match fs::remove_file(&segment.path) {
                Ok(()) => tracing::debug!(
                    path = %segment.path.display(),
                    "deleted log segment passed by all consumers"
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    path = %segment.path.display(),
                    error = %e,
                    "failed to delete log segment; it will be retried after the next reopen"
                ),
            }
        }
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Log for EmbeddedLog {
    fn partition_count(&self) -> u32 {
        self.config.partitions
    }

    fn append(
        &self,
        partition: u32,
        records: Vec<Bytes>,
    ) -> BoxFuture<'static, Result<Range<Offset>>> {
        // Enqueue now rather than on first poll, so call order is log order.
        match self.enqueue(partition, records) {
            Ok(receiver) => Box::pin(async move {
                // A dropped reply means the writer is gone without answering.
                receiver.await.unwrap_or(Err(LogError::Closed))
            }),
            Err(e) => Box::pin(future::ready(Err(e))),
        }
    }

    fn read(
        &self,
        partition: u32,
        from: Offset,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<LogEntry>>> {
        Box::pin(async move {
            let handle = self.handle(partition)?;
            self.ensure_open()?;
            match handle.shared.plan_read(from, max_bytes)? {
                Some(plan) => run_blocking(move || plan.execute()).await,
                None => Ok(Vec::new()),
            }
        })
    }

    fn end_offset(&self, partition: u32) -> Result<Offset> {
        Ok(self.handle(partition)?.shared.state().end_offset())
    }

    fn start_offset(&self, partition: u32) -> Result<Offset> {
        Ok(self.handle(partition)?.shared.state().start_offset())
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn consumer_passed(&self, consumer: &str, partition: u32, offset: Offset) -> Result<()> {
        let handle = self.handle(partition)?;
        self.ensure_open()?;
        // Nobody can have processed records that do not exist yet; clamping
        // keeps a buggy report from deleting records appended later.
        let offset = offset.min(handle.shared.state().end_offset());
        let advanced = lock_mutex(&self.consumers).advance(consumer, partition, offset)?;
        if advanced {
            self.apply_retention(partition);
        }
        Ok(())
    }
}

/// Runs blocking file IO off the async worker threads when inside a Tokio
/// runtime, inline otherwise.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(f)
            .await
            .unwrap_or(Err(LogError::Closed)),
        Err(_) => f(),
    }
}

fn acquire_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(LogError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(io_error(&path)(e)),
    }
}

fn check_metadata(dir: &Path, partitions: u32, fsync: bool) -> Result<()> {
    let path = dir.join(META_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let version = crate::format_version(text.lines().next(), META_PREFIX);
            if let Some(found) = version.filter(|v| *v > LOG_FORMAT) {
                return Err(LogError::NewerFormat {
                    what: "the log",
                    path: dir.to_path_buf(),
                    found,
                    known: LOG_FORMAT,
                });
            }
            let stored = text
                .lines()
                .find_map(|line| line.strip_prefix("partitions="))
                .and_then(|n| n.trim().parse::<u32>().ok())
                .filter(|_| version.is_some())
                .ok_or_else(|| LogError::Corrupt {
                    path: path.clone(),
                    position: 0,
                    reason: "unreadable log metadata".into(),
                })?;
            if stored != partitions {
                return Err(LogError::PartitionCountMismatch {
                    path: dir.to_path_buf(),
                    stored,
                    configured: partitions,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let text = format!("{META_PREFIX} v{LOG_FORMAT}\npartitions={partitions}\n");
            write_atomically(dir, META_FILE, text.as_bytes(), fsync)
        }
        Err(e) => Err(io_error(&path)(e)),
    }
}

/// Replaces `dir/name` so that a crash leaves either the old or the new
/// contents, never a mix.
pub(crate) fn write_atomically(dir: &Path, name: &str, contents: &[u8], fsync: bool) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(contents).map_err(io_error(&tmp))?;
    if fsync {
        file.sync_all().map_err(io_error(&tmp))?;
    }
    drop(file);
    fs::rename(&tmp, &path).map_err(io_error(&path))?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    sync_dir_io(dir).map_err(io_error(dir))
}

pub(crate) fn sync_dir_io(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// Poisoning only means another thread panicked mid-update; every guarded
// structure here stays consistent between statements, so carry on.
fn lock_mutex<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
