//! A one-member etcd on loopback for tests (`/usr/bin/etcd`, Debian package
//! `etcd-server`, installed by `scripts/install-deps`): random client and
//! peer ports, a temporary data dir, killed and removed on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";

/// True when the etcd binary is installed (else say how to get it).
pub fn available() -> bool {
    let ok = std::path::Path::new(ETCD).exists();
    if !ok {
        println!("skipped: {ETCD} missing (scripts/install-deps installs etcd-server)");
    }
    ok
}

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A one-member etcd on loopback; killed and its data dir removed on drop.
pub struct Etcd {
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = std::env::temp_dir().join(format!(
            "e2lb-leader-etcd-{}-{}",
            std::process::id(),
            mono_ns()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut last = String::new();
        for _ in 0..3 {
            // Two distinct free ports (held together, then released).
            let (c, p) = (
                TcpListener::bind("127.0.0.1:0").expect("bind"),
                TcpListener::bind("127.0.0.1:0").expect("bind"),
            );
            let mut etcd = Etcd {
                dir: dir.clone(),
                client_port: c.local_addr().expect("addr").port(),
                peer_port: p.local_addr().expect("addr").port(),
                child: None,
            };
            drop((c, p));
            match etcd.spawn() {
                Ok(()) => return etcd,
                Err(e) => {
                    last = e;
                    etcd.dir = PathBuf::new(); // keep the dir for the next try
                    let _ = std::fs::remove_dir_all(dir.join("data"));
                }
            }
        }
        panic!("etcd did not start: {last}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts etcd (again, on the same ports and data) and waits for health.
    pub fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("etcd log");
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(ETCD)
            .arg("--name=e2lb-test")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=e2lb-test={peer}"))
            .arg("--initial-cluster-state=new")
            .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {ETCD}: {e}"))?;
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if self.healthy() {
                return Ok(());
            }
            let child = self.child.as_mut().expect("child");
            if let Some(s) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Err(format!("etcd exited ({s}):\n{}", self.log_tail()));
            }
            if Instant::now() >= end {
                return Err(format!("etcd not healthy in 20 s:\n{}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /health` answers `{"health":"true"}` once the member has a leader.
    pub fn healthy(&self) -> bool {
        let addr = ([127, 0, 0, 1], self.client_port).into();
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.contains("\"health\":\"true\"")
    }

    /// SIGKILL; returns the mono time once etcd is reaped.
    pub fn kill(&mut self) -> u64 {
        let mut child = self.child.take().expect("etcd running");
        child.kill().expect("kill etcd");
        child.wait().expect("wait etcd");
        mono_ns()
    }

    pub fn signal(&self, sig: libc::c_int) -> u64 {
        let pid = self.child.as_ref().expect("etcd running").id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
        mono_ns()
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL also ends a stopped process
            let _ = c.wait();
        }
        if self.dir.as_os_str().is_empty() {
            return;
        }
        if std::thread::panicking() {
            eprintln!("etcd log (tail):\n{}", self.log_tail());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
