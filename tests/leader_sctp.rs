//! Two `e2lb run` replicas with the scaler and etcd leader election, over
//! kernel SCTP (inside the rig): exactly one leads and actuates; SIGKILL it
//! and the other takes over within the lease time and actuates; at no
//! sampled moment do both lead, and no scale-up is carried out twice.
//!
//! The scaler uses the static actuator with `min_replicas = 2`, one
//! configured backend and one standby: the first decision of whichever
//! replica leads is a `min_replicas` scale-up (activating the standby). Each
//! replica's own counters show whether it actuated.

#[path = "common/rig.rs"]
mod rig;

#[path = "common/etcd.rs"]
mod etcd;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TTL_S: u64 = 3;

/// Kills the child on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    Some((code, out))
}

/// The value of a metric line that starts with `name` (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

struct Replica {
    name: &'static str,
    admin: SocketAddr,
    proc: Option<Proc>,
}

impl Replica {
    fn start(name: &'static str, i: u8, etcd: &str, dir: &std::path::Path) -> Replica {
        let admin: SocketAddr = format!("127.0.0.1:{}", 42090 + u16::from(i))
            .parse()
            .unwrap();
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                r#"
[proxy]
listen = ["127.0.8.{n}:42421"]
[[backends]]
name = "ric-0"
addr = "127.0.7.1:42421"
[probe]
enabled = false
[scale]
enabled = true
actuator = "static"
tick = "500ms"
min_replicas = 2
max_replicas = 2
[[scale.standby]]
name = "ric-1"
addr = "127.0.7.2:42421"
[scale.leader]
etcd = ["{etcd}"]
key = "/e2lb-test/leader-sctp"
id = "{name}"
lease_ttl = "{TTL_S}s"
[admin]
listen = "{admin}"
[log]
level = "info"
"#,
                n = i + 1
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_e2lb"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join(format!("{name}.log")))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .unwrap();
        Replica {
            name,
            admin,
            proc: Some(Proc(child)),
        }
    }

    fn metrics(&self) -> Option<String> {
        match http_get(self.admin, "/metrics") {
            Some((200, body)) => Some(body),
            _ => None,
        }
    }

    fn leads(&self) -> bool {
        self.metrics()
            .is_some_and(|m| metric(&m, "e2lb_leader_is_leader") == 1.0)
    }

    fn scale_ups(&self) -> f64 {
        self.metrics().map_or(0.0, |m| {
            metric(
                &m,
                "e2lb_scale_actuations_total{actuator=\"static\",op=\"scale_up\",outcome=\"ok\"}",
            )
        })
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            // SIGKILL: no resign, the lease must lapse.
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }
}

/// Polls both replicas until `f` holds, asserting at every sample that they
/// do not both lead.
fn wait(replicas: &[&Replica], what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let end = Instant::now() + timeout;
    loop {
        let leaders: Vec<&str> = replicas
            .iter()
            .filter(|r| r.proc.is_some() && r.leads())
            .map(|r| r.name)
            .collect();
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if f() {
            return;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
fn one_replica_leads_and_actuates_and_the_other_takes_over_after_sigkill() {
    if !rig::sctp_or_skip() || !etcd::available() {
        return;
    }
    let etcd = etcd::Etcd::start();
    let dir = std::env::temp_dir().join(format!("e2lb-leader-sctp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut a = Replica::start("replica-a", 0, &etcd.endpoint(), &dir);
    let mut b = Replica::start("replica-b", 1, &etcd.endpoint(), &dir);

    // Both serve; exactly one leads, and only it carries out the scale-up.
    wait(
        &[&a, &b],
        "both replicas up",
        Duration::from_secs(60),
        || a.metrics().is_some() && b.metrics().is_some(),
    );
    wait(&[&a, &b], "a leader", Duration::from_secs(30), || {
        a.leads() || b.leads()
    });
    let a_leads = a.leads();
    let (leader, follower) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    wait(
        &[&*leader, &*follower],
        "the leader's min_replicas scale-up",
        Duration::from_secs(30),
        || leader.scale_ups() == 1.0,
    );
    // The follower decided the same but did not actuate (several ticks).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(follower.scale_ups(), 0.0, "the follower actuated");
    let fm = follower.metrics().unwrap();
    assert_eq!(metric(&fm, "e2lb_scale_leader"), 0.0, "{fm}");
    assert!(
        metric(
            &fm,
            "e2lb_scale_decisions_total{action=\"scale_up\",rule=\"min_replicas\"}"
        ) >= 1.0,
        "{fm}"
    );
    let (_, scaler) = http_get(follower.admin, "/api/v1/scaler").unwrap();
    assert!(scaler.contains("follower: not actuated"), "{scaler}");
    assert_eq!(leader.scale_ups(), 1.0, "no second scale-up by the leader");

    // SIGKILL the leader: the follower leads within the lease (+ etcd's
    // expiry granularity and a scaler tick), then actuates once.
    let killed = Instant::now();
    let leader_name = leader.name;
    leader.kill();
    wait(
        &[&*leader, &*follower],
        "the takeover",
        Duration::from_secs(TTL_S + 10),
        || follower.leads(),
    );
    let takeover = killed.elapsed();
    println!(
        "{leader_name} killed; {} leads after {takeover:?}",
        follower.name
    );
    assert!(
        takeover <= Duration::from_secs(TTL_S + 4),
        "takeover took {takeover:?} (lease {TTL_S} s)"
    );
    wait(
        &[&*leader, &*follower],
        "the new leader's scale-up",
        Duration::from_secs(20),
        || follower.scale_ups() == 1.0,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(follower.scale_ups(), 1.0, "exactly one scale-up");
    let _ = std::fs::remove_dir_all(&dir);
}
