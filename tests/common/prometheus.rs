//! A Prometheus server on loopback for tests (Debian package `prometheus`,
//! installed by `scripts/install-deps`): its own config scraping the given
//! targets every second, its own storage; killed and cleaned up on drop.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// How to get the binary, for messages when it is missing.
pub const MISSING: &str = "the `prometheus` binary is not on PATH; install it with \
                           `apt-get install -y prometheus` (Debian package prometheus, \
                           scripts/install-deps does)";

/// True when `prometheus --version` runs.
pub fn installed() -> bool {
    Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub struct PromServer {
    pub child: Child,
    dir: PathBuf,
    pub base_url: String,
}

impl PromServer {
    /// Starts Prometheus scraping `scrape` every second (`tag` names its
    /// temporary directory). Panics when it cannot be started.
    pub fn start(scrape: &[SocketAddr], tag: &str) -> PromServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("e2lb-{tag}-prom-{}-{}", std::process::id(), port));
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let targets: Vec<String> = scrape.iter().map(|a| format!("'{a}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: ric\n    scrape_interval: 1s\n    \
             scrape_timeout: 500ms\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn prometheus");
        PromServer {
            child,
            dir,
            base_url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
