//! `e2lb run` as a process over kernel SCTP (inside the rig): configuration
//! file, RIC and node simulators around it, admin endpoints over HTTP, and a
//! SIGTERM that drains and exits cleanly.

#[path = "common/rig.rs"]
mod rig;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2lb::sim::{run_nodes, run_ric, NodeLive, NodeSimConfig, RicLive, RicSimConfig, TrafficClass};
use e2lb::transport::sctp::{SctpConnector, SctpListener};
use e2lb::transport::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    Some((code, out))
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn run_serves_nodes_exposes_metrics_and_drains_on_sigterm() {
    if !rig::sctp_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("e2lb-run-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("e2lb.toml");
    std::fs::write(
        &cfg,
        r#"
[proxy]
listen = ["127.0.0.1:39421,127.0.0.6:39421"]
setup_timeout = "2s"
drain_timeout = "2s"
[[backends]]
name = "ric-a"
addr = "127.0.2.1:39421"
[[backends]]
name = "ric-b"
addr = "127.0.2.2:39421"
[admin]
listen = "127.0.0.1:39090"
"#,
    )
    .unwrap();
    let admin: SocketAddr = "127.0.0.1:39090".parse().unwrap();

    // Two RIC simulators.
    let stop = CancellationToken::new();
    let mut rics = Vec::new();
    for (i, addr) in ["127.0.2.1:39421", "127.0.2.2:39421"].iter().enumerate() {
        let l = SctpListener::bind(&[addr.parse().unwrap()], &Options::default()).unwrap();
        let live = RicLive::new();
        // The default probe URL: http://<backend host>:8080/metrics.
        let m_addr = SocketAddr::new(addr.parse::<SocketAddr>().unwrap().ip(), 8080);
        let s = stop.clone();
        tokio::spawn(e2lb::sim::serve_metrics(m_addr, live.clone(), async move {
            s.cancelled().await
        }));
        let s = stop.clone();
        let cfg = RicSimConfig {
            name: format!("ric-{i}"),
            requestor_id: 10 + i as u16,
            ..Default::default()
        };
        rics.push(tokio::spawn(run_ric(l, cfg, live, async move {
            s.cancelled().await
        })));
    }

    let child = Command::new(env!("CARGO_BIN_EXE_e2lb"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Proc(child);
    // Ready once the admin endpoint says so.
    let mut ready = false;
    for _ in 0..100 {
        if let Some((200, _)) = http_get(admin, "/readyz").await {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "e2lb run did not become ready");

    // Four nodes for 3 s, to the second address of the multi-homed endpoint.
    let live = NodeLive::new();
    let ncfg = NodeSimConfig {
        target: "127.0.0.6:39421".parse().unwrap(),
        nodes: 4,
        class: TrafficClass::Custom {
            period: Duration::from_millis(20),
            payload: 300,
        },
        duration: Duration::from_secs(3),
        drain: Duration::from_secs(1),
        ..Default::default()
    };
    let report = run_nodes(SctpConnector::new(Options::default()), ncfg, live).await;
    assert_eq!(report.setups_ok, 4);
    assert!(report.indications_sent > 100);

    let (code, metrics) = http_get(admin, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("e2lb_associations_accepted_total 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("e2lb_e2_setups_total{outcome=\"accepted\"} 4"),
        "{metrics}"
    );
    let forwarded = metrics
        .lines()
        .find(|l| l.starts_with("e2lb_messages_forwarded_total{direction=\"node_to_ric\",procedure=\"RICindication\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(forwarded, report.indications_sent, "{metrics}");
    // Both backends were probed at their default metrics URL and stayed healthy.
    for b in ["ric-a", "ric-b"] {
        assert!(
            metrics.contains(&format!(
                "e2lb_probes_total{{backend=\"{b}\",outcome=\"ok\"}}"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!("e2lb_backend_healthy{{backend=\"{b}\"}} 1")),
            "{metrics}"
        );
    }

    // SIGHUP: the file is re-read; a backend added to it joins the pool.
    let pid = child.0.id() as libc::pid_t;
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[admin]",
        "[[backends]]\nname = \"ric-c\"\naddr = \"127.0.2.3:39421\"\n[admin]",
    );
    std::fs::write(&cfg, text).unwrap();
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let mut joined = false;
    for _ in 0..50 {
        if let Some((200, body)) = http_get(admin, "/api/v1/backends").await {
            if body.contains("\"ric-c\"") {
                joined = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(joined, "ric-c did not join after SIGHUP");
    let (_, metrics) = http_get(admin, "/metrics").await.unwrap();
    assert!(
        metrics.contains("e2lb_config_reloads_total{outcome=\"applied\"} 1"),
        "{metrics}"
    );

    // SIGTERM: drains and exits 0.
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut exited = None;
    for _ in 0..100 {
        if let Some(st) = child.0.try_wait().unwrap() {
            exited = Some(st);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = exited.expect("e2lb exits after SIGTERM");
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(st.success(), "exit status {st:?}\n{err}");
    assert!(err.contains("signal received: draining"), "{err}");

    stop.cancel();
    let mut received = 0;
    for r in rics {
        let r = r.await.unwrap();
        received += r.indications;
        assert_eq!(r.gaps, 0);
    }
    assert_eq!(
        received, report.indications_sent,
        "no loss through the e2lb process"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_without_kernel_sctp_names_the_fix() {
    if e2lb::transport::sctp::kernel_sctp_available() {
        return; // Covered on hosts without SCTP.
    }
    let out = Command::new(env!("CARGO_BIN_EXE_e2lb"))
        .arg("run")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no SCTP") && err.contains("uml-run"), "{err}");
}
