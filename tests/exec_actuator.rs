//! The exec actuator with real child processes (host): a small HTTP server
//! (`python3 -m http.server`) stands in for a RIC pod, so readiness is its
//! metrics URL answering. Start, discover, supervise (crash → restart),
//! stop exactly the chosen one, limits.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use e2lb::scale::actuator::exec::{ExecActuator, ExecConfig};
use e2lb::scale::actuator::{Actuator, Provisioned};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn config(hosts: &[[u8; 4]], restart: bool) -> ExecConfig {
    ExecConfig {
        // The child serves HTTP on {host}:{metrics_port}; it also sees its
        // name in the environment (checked through the directory listing
        // being served from a per-child directory is overkill: the pid check
        // below is enough).
        start: [
            "python3",
            "-m",
            "http.server",
            "{metrics_port}",
            "--bind",
            "{host}",
        ]
        .map(String::from)
        .to_vec(),
        addresses: hosts
            .iter()
            .map(|h| SocketAddr::from((*h, 36421)))
            .collect(),
        name_prefix: "auto".into(),
        metrics_port: Some(free_port()),
        metrics_path: "/".into(),
        stop_timeout: Duration::from_secs(3),
        ready_timeout: Duration::from_secs(10),
        restart,
        restart_backoff: Duration::from_millis(100),
        log_dir: Some(std::env::temp_dir().join(format!(
            "e2lb-exec-test-{}-{}",
            std::process::id(),
            hosts.first().map_or(0, |h| h[3])
        ))),
    }
}

async fn discover_until(
    a: &ExecActuator,
    what: &str,
    f: impl Fn(&[Provisioned]) -> bool,
) -> Vec<Provisioned> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = a.discover().await.expect("discover");
        if f(&d) {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; discovered {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn python_or_skip() -> bool {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("skipped: python3 missing (scripts/install-deps installs it)");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_supervises_and_stops_exactly_the_chosen_backend() {
    if !python_or_skip() {
        return;
    }
    let external = Provisioned {
        name: "ric-0".into(),
        addr: "127.0.5.9:36421".parse().unwrap(),
        metrics: None,
    };
    let cfg = config(&[[127, 0, 5, 1], [127, 0, 5, 2], [127, 0, 5, 3]], true);
    let a = ExecActuator::new(cfg, vec![external.clone()]).unwrap();
    assert_eq!(a.kind(), "exec");
    // The configured backend counts: 3 wanted = 2 children.
    a.apply(3, &[]).await.unwrap();
    let d = discover_until(&a, "two ready children", |d| d.len() == 3).await;
    assert_eq!(d[0], external);
    let names: Vec<&str> = d[1..].iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["auto-1", "auto-2"]);
    assert_eq!(d[1].addr, "127.0.5.1:36421".parse().unwrap());
    let m = d[1].metrics.as_deref().unwrap();
    assert!(
        m.starts_with("http://127.0.5.1:") && m.ends_with('/'),
        "{m}"
    );
    assert_eq!(a.stats().started.load(Ordering::Relaxed), 2);
    // Each child's output goes to its log file: http.server logs the
    // readiness probe's request.
    let log = a
        .config()
        .log_dir
        .as_ref()
        .expect("log dir")
        .join("auto-1.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("GET / HTTP/1.1"),
        "{}: {text:?}",
        log.display()
    );

    // Idempotent.
    a.apply(3, &[]).await.unwrap();
    assert_eq!(a.children().len(), 2);

    // A crash is noticed and the child restarted on the same address.
    let pid = a.pid("auto-1").expect("running");
    // SAFETY: kill(2) on a child process of this test.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.stats().restarted.load(Ordering::Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.stats().crashed.load(Ordering::Relaxed), 1);
    discover_until(&a, "auto-1 back", |d| d.iter().any(|b| b.name == "auto-1")).await;
    assert_ne!(a.pid("auto-1"), Some(pid), "a new process");

    // Scale down by one, choosing auto-1: exactly that one stops.
    let chosen = d[1].clone();
    a.apply(2, &[chosen]).await.unwrap();
    let d = a.discover().await.unwrap();
    let names: Vec<&str> = d.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["ric-0", "auto-2"]);
    assert_eq!(a.stats().stopped.load(Ordering::Relaxed), 1);
    assert_eq!(
        a.stats().crashed.load(Ordering::Relaxed),
        1,
        "a stop is not a crash"
    );
    // Its address is free again: the next start reuses it.
    a.apply(3, &[]).await.unwrap();
    let d = discover_until(&a, "auto-3", |d| d.len() == 3).await;
    assert_eq!(d[2].name, "auto-3");
    assert_eq!(d[2].addr, "127.0.5.1:36421".parse().unwrap());

    // Removing the external backend deactivates it (it is not ours to stop).
    a.apply(2, &[external]).await.unwrap();
    let names: Vec<String> = a
        .discover()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["auto-2", "auto-3"]);

    // Limits: one free address left.
    let e = a.apply(5, &[]).await.unwrap_err();
    assert_eq!(e.kind(), "limit");
    assert!(e.to_string().contains("no free address"), "{e}");

    a.apply(0, &[]).await.unwrap();
    assert!(a.children().is_empty());
    assert!(a.discover().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_restart_a_crashed_backend_is_reported_gone() {
    if !python_or_skip() {
        return;
    }
    let a = ExecActuator::new(config(&[[127, 0, 5, 11]], false), vec![]).unwrap();
    a.apply(1, &[]).await.unwrap();
    discover_until(&a, "ready", |d| d.len() == 1).await;
    let pid = a.pid("auto-1").expect("running");
    // SAFETY: kill(2) on a child process of this test.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    discover_until(&a, "gone", |d| d.is_empty()).await;
    assert!(a.children().is_empty());
    assert_eq!(a.stats().crashed.load(Ordering::Relaxed), 1);
    assert_eq!(a.stats().restarted.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_command_that_cannot_start_is_an_error() {
    let mut cfg = config(&[[127, 0, 5, 21]], true);
    cfg.start = vec!["/nonexistent/e2lb-backend".into()];
    let a = ExecActuator::new(cfg, vec![]).unwrap();
    let e = a.apply(1, &[]).await.unwrap_err();
    assert_eq!(e.kind(), "failed");
    assert!(e.to_string().contains("/nonexistent/e2lb-backend"), "{e}");
    assert!(a.children().is_empty());
}
