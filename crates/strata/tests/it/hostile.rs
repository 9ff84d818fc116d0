//! The whole server against hostile neighbours: other users of the machine
//! reading the generated write key, web pages reaching a loopback server
//! through DNS rebinding, and anyone reaching a listen address opened for
//! browsers' SDKs.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::process::{KEY, Served, free_port, strata};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `strata serve --role collector` on `data` without `STRATA_WRITE_KEY`.
fn keyless_collector(data: &std::path::Path) -> std::process::Child {
    strata()
        .args([
            "serve",
            "--role",
            "collector",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .arg("--data-dir")
        .arg(data)
        .env_remove("STRATA_WRITE_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The first line the child prints (the generated key), then stops it.
fn first_line_then_kill(mut child: std::process::Child) -> (String, String) {
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    (first, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_generated_write_key_is_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = first_line_then_kill(keyless_collector(dir.path()));
    let path = dir.path().join("default_write_key");
    let stored = std::fs::read_to_string(&path).unwrap();
    assert!(
        first.contains(&stored),
        "printed {first:?}, stored {stored:?}"
    );
    assert_eq!(mode(&path), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("default_write_key.")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A key file an earlier release left world-readable is tightened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (again, _) = first_line_then_kill(keyless_collector(dir.path()));
    assert!(
        again.contains(&stored),
        "the same key is used again: {again:?}"
    );
    assert_eq!(mode(&path), 0o600);
}

fn status_with_host(url: &str, host: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Host: {host}"),
        ])
        .args([
            "-u",
            &format!("{KEY}:"),
            "-H",
            "content-type: application/json",
        ])
        .args(["-d", r#"{"userId":"u","event":"A"}"#])
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_rebinding_host_reaches_the_collector_but_not_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start_with(dir.path(), &["--role", "collector"]);
    let get = |path: &str, host: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &format!("Host: {host}"),
            ])
            .arg(format!("{}{path}", served.base))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let port = served.base.rsplit(':').next().unwrap().to_string();
    for path in ["/", "/api/pipeline"] {
        assert_eq!(get(path, "evil.example"), "421", "{path}");
        assert_eq!(get(path, &format!("localhost:{port}")), "200", "{path}");
    }
    // SDKs post events under any name the collector is reached by.
    assert_eq!(
        status_with_host(&format!("{}/v1/track", served.base), "evil.example"),
        "200"
    );
}

/// Processes started together on one data dir without `STRATA_WRITE_KEY`
/// (several schedulers, say) all start, and agree on one key.
#[test]
fn processes_started_together_agree_on_one_generated_key() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..4).map(|_| keyless_collector(dir.path())).collect();
    let stored = {
        let path = dir.path().join("default_write_key");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !path.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::fs::read_to_string(&path).unwrap()
    };
    for child in children {
        let (first, stderr) = first_line_then_kill(child);
        assert!(
            first.contains(&stored),
            "printed {first:?}, stored {stored:?}: {stderr}"
        );
    }
}

fn status_of(url: &str, host: Option<&str>) -> String {
    let mut curl = Command::new("curl");
    curl.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
    if let Some(host) = host {
        curl.args(["-H", &format!("Host: {host}")]);
    }
    let out = curl.arg(url).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `listen` opened to the world for browsers' SDKs publishes no analytics
/// once the dashboard has a listener of its own.
#[test]
fn with_dashboard_listen_the_listen_port_serves_ingestion_only() {
    let dir = tempfile::tempdir().unwrap();
    let dashboard_port = free_port();
    let dashboard = format!("http://127.0.0.1:{dashboard_port}");
    let served = Served::start_with(
        dir.path(),
        &[
            "--role",
            "collector",
            "--dashboard-listen",
            &format!("127.0.0.1:{dashboard_port}"),
        ],
    );
    for path in ["/", "/api/pipeline", "/api/runs", "/api/realtime"] {
        assert_eq!(
            status_of(&format!("{}{path}", served.base), None),
            "404",
            "{path} on listen"
        );
    }
    for path in ["/", "/api/pipeline", "/api/runs"] {
        assert_eq!(
            status_of(&format!("{dashboard}{path}"), None),
            "200",
            "{path} on dashboard_listen"
        );
    }
    // The Host check follows the dashboard's own (loopback) address.
    assert_eq!(
        status_of(&format!("{dashboard}/api/pipeline"), Some("evil.example")),
        "421"
    );
    assert_eq!(
        status_with_host(&format!("{}/v1/track", served.base), "shop.example"),
        "200"
    );
    assert_eq!(
        status_with_host(&format!("{dashboard}/v1/track"), "localhost"),
        "404"
    );
    assert!(served.terminate().success());
}

/// `strata serve --role collector` with `args`, until ready; then stopped,
/// and what it logged.
fn logged_by(args: &[&str], ready_at: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = strata()
        .args(["serve", "--role", "collector"])
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .env("STRATA_WRITE_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status_of(&format!("{ready_at}/ready"), None) != "200" {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_dashboard_on_a_public_address_is_warned_about() {
    let port = free_port();
    let local = format!("http://127.0.0.1:{port}");
    let logged = logged_by(&["--listen", &format!("0.0.0.0:{port}")], &local);
    assert!(
        logged.contains(&format!("served on 0.0.0.0:{port} with ingestion"))
            && logged.contains(r#"dashboard_listen = "127.0.0.1:8081""#)
            && logged.contains("--dashboard-listen"),
        "{logged}"
    );

    let (port, dashboard_port) = (free_port(), free_port());
    let logged = logged_by(
        &[
            "--listen",
            &format!("0.0.0.0:{port}"),
            "--dashboard-listen",
            &format!("127.0.0.1:{dashboard_port}"),
        ],
        &format!("http://127.0.0.1:{port}"),
    );
    assert!(!logged.contains("/api/*"), "{logged}");
    let logged = logged_by(
        &["--listen", &format!("127.0.0.1:{port}")],
        &format!("http://127.0.0.1:{port}"),
    );
    assert!(!logged.contains("/api/*"), "{logged}");
}
