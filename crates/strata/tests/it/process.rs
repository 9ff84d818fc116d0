use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "wk_it";

pub fn strata() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_DATA_DIR")
        .env("STRATA_LOG", "warn");
    command
}

/// Fails the test with the command's stderr unless it exited with success.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn run(args: &[&str], data_dir: &Path) -> Output {
    strata()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Served {
    pub child: Child,
    pub base: String,
}

impl Served {
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// `strata serve` with extra arguments (e.g. `--config F`).
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_env(data_dir, extra, &[])
    }

    /// `strata serve` with extra arguments and environment variables.
    pub fn start_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = strata()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .env("STRATA_WRITE_KEY", KEY)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let served = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        served.wait_ready();
        served
    }

    /// `GET /health` answers 200.
    pub fn healthy(&self) -> bool {
        Command::new("curl")
            .args(["-sf", &format!("{}/health", self.base)])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/ready", self.base);
        while Instant::now() < deadline {
            let ok = std::process::Command::new("curl")
                .args(["-sf", &url])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("strata serve did not become ready");
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::forget(self);
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `strata sql ... --format json` → the single number it returns.
pub fn count(data_dir: &Path, sql: &str) -> i64 {
    let out = run(&["sql", sql, "--format", "json"], data_dir);
    assert_success(&out);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows[0].as_object().unwrap();
    row.values().next().unwrap().as_i64().unwrap()
}

/// `strata generate` of the shop from 2026-03-01, posted to a running server.
pub fn send_generated(base: &str, days: &str, users: &str, seed: &str) {
    let out = strata()
        .args(["generate", "--days", days, "--users", users, "--seed", seed])
        .args([
            "--start",
            "2026-03-01",
            "--target",
            base,
            "--write-key",
            KEY,
        ])
        .output()
        .unwrap();
    assert_success(&out);
}

/// POSTs a JSON body with the test source's write key; `curl -sf`, so a
/// non-2xx answer is a failed exit status.
pub fn post(base: &str, path: &str, body: &str) -> Output {
    Command::new("curl")
        .args([
            "-sf",
            "-u",
            &format!("{KEY}:"),
            "-H",
            "content-type: application/json",
        ])
        .args(["-d", body, &format!("{base}{path}")])
        .output()
        .unwrap()
}
