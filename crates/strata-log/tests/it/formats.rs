//! Format versions: a log written by this release reopens; one written by a
//! later release is refused with one sentence, and nothing in it is touched.

use std::fs;

use strata_log::{EmbeddedLog, EmbeddedLogConfig, Log, LogError};

use crate::{config, payload, read_all};

const SENTENCE_END: &str = "it was written by a later Strata release; run that release (or a \
                            newer one) on this data dir";

#[tokio::test]
async fn a_log_of_this_format_reopens_with_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(2, 1 << 20)).unwrap();
    log.append(1, vec![payload(0, 10), payload(1, 10)])
        .await
        .unwrap();
    log.close();
    let meta = fs::read_to_string(dir.path().join("strata-log.meta")).unwrap();
    assert_eq!(meta, "strata-log v1\npartitions=2\n");

    let log = EmbeddedLog::open(dir.path(), config(2, 1 << 20)).unwrap();
    assert_eq!(read_all(log.as_ref(), 1, usize::MAX).await.len(), 2);
}

#[tokio::test]
async fn a_log_of_a_newer_format_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(2, 1 << 20)).unwrap();
    log.append(0, vec![payload(0, 10)]).await.unwrap();
    log.close();
    let meta_path = dir.path().join("strata-log.meta");
    fs::write(&meta_path, "strata-log v2\npartitions=2\nsomething-new=1\n").unwrap();

    let err = EmbeddedLog::open(dir.path(), config(2, 1 << 20)).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::NewerFormat {
                found: 2,
                known: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.starts_with("the log at "), "{text}");
    assert!(
        text.contains("has format version 2, newer than version 1"),
        "{text}"
    );
    assert!(text.ends_with(SENTENCE_END), "{text}");
    assert_eq!(
        fs::read_to_string(&meta_path).unwrap(),
        "strata-log v2\npartitions=2\nsomething-new=1\n"
    );
}

#[tokio::test]
async fn consumer_positions_of_a_newer_format_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let with_consumer = EmbeddedLogConfig {
        consumers: vec!["loader".into()],
        ..config(1, 1 << 20)
    };
    let log = EmbeddedLog::open(dir.path(), with_consumer.clone()).unwrap();
    log.append(0, vec![payload(0, 10)]).await.unwrap();
    log.consumer_passed("loader", 0, 1).unwrap();
    log.close();
    let consumers = dir.path().join("consumers");
    let written = fs::read_to_string(&consumers).unwrap();
    assert_eq!(written, "strata-log consumers v1\n0\t1\tloader\n");

    fs::write(&consumers, "strata-log consumers v7\n0\t1\tloader\n").unwrap();
    let err = EmbeddedLog::open(dir.path(), with_consumer).unwrap_err();
    assert!(
        matches!(err, LogError::NewerFormat { found: 7, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the log's consumer positions at "),
        "{err}"
    );
}
