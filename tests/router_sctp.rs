//! Router mode over kernel SCTP (inside the rig): 10 E2 node simulators
//! (class B, two RAN functions each, every indication carrying its node-side
//! subscription id and sequence number) shared by three `e2lb sim ric`
//! processes that number their subscriptions alike on every node
//! (`--ids-per-association`, one requestor id): their RICrequestIDs collide
//! at each node on purpose. One `e2lb run` with a `[[router.groups]]` entry
//! naming the three.
//!
//! Every indication must reach exactly its subscriber (no loss, no
//! duplicate, no misroute: each RIC sees only its own node-side streams).
//! Then one RIC is SIGKILLed: e2lb deletes its subscriptions at the nodes,
//! and the other two RICs' streams continue untouched.

#[path = "common/rig.rs"]
mod rig;
#[path = "common/rigproc.rs"]
mod rigproc;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use e2lb::sim::{NodeLive, NodeReport, NodeSimConfig, TrafficClass};
use e2lb::transport::sctp::SctpConnector;
use e2lb::transport::Options;
use rigproc::{
    addr, admin_metrics, api, http, read_json, sample, start_e2lb, wait_for, Proc, ProcOpts,
};
use serde_json::Value;
use tokio::task::JoinHandle;

const POLL: Duration = Duration::from_millis(200);
const PROC: ProcOpts = ProcOpts {
    env: &[],
    tail: 60,
    term_on_drop: None,
};
const NODES: u32 = 10;
const FUNCTIONS: u64 = 2;
const LISTEN: &str = "127.0.0.1:49421";
const ADMIN: &str = "127.0.0.1:49090";
const METRICS_PORT: u16 = 49480;
const RICS: [(&str, &str); 3] = [
    ("ric-r0", "127.0.16.1:49421"),
    ("ric-r1", "127.0.16.2:49421"),
    ("ric-r2", "127.0.16.3:49421"),
];

fn metrics_addr(e2: &str) -> SocketAddr {
    SocketAddr::new(addr(e2).ip(), METRICS_PORT)
}

fn config(dir: &Path) -> PathBuf {
    let backends: String = RICS
        .iter()
        .map(|(name, e2)| format!("[[backends]]\nname = \"{name}\"\naddr = \"{e2}\"\n"))
        .collect();
    let pods: Vec<String> = RICS.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let text = format!(
        r#"
[proxy]
listen = ["{LISTEN}"]
drain_timeout = "3s"

{backends}
[probe]
tick = "1s"
timeout = "900ms"
metrics_port = {METRICS_PORT}

[router]
retry_min = "1s"
retry_max = "5s"

[[router.groups]]
name = "shared-cells"
plmn = "00f110"
pods = [{pods}]

[admin]
listen = "{ADMIN}"
"#,
        pods = pods.join(", "),
    );
    let path = dir.join("e2lb.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn start_rics(dir: &Path) -> Vec<Proc> {
    RICS.iter()
        .map(|(name, e2)| {
            let args: Vec<String> = [
                "sim",
                "ric",
                "--listen",
                e2,
                "--metrics",
                &metrics_addr(e2).to_string(),
                "--name",
                name,
                "--requestor-id",
                "7",
                "--ids-per-association",
                "--report",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([dir.join(format!("{name}.json")).display().to_string()])
            .collect();
            Proc::spawn(name, &args, dir.join(format!("{name}.log")), PROC)
        })
        .collect()
}

fn nodes() -> (Arc<NodeLive>, JoinHandle<NodeReport>) {
    let cfg = NodeSimConfig {
        target: addr(LISTEN),
        nodes: NODES,
        first_node_id: 7000,
        ran_functions: vec![1, 2],
        class: TrafficClass::B,
        duration: Duration::from_secs(600),
        drain: Duration::from_secs(2),
        connect_spread: Duration::from_secs(2),
        ..NodeSimConfig::default()
    };
    let live = NodeLive::new();
    let task = tokio::spawn(e2lb::sim::run_nodes(
        SctpConnector::new(Options::default()),
        cfg,
        live.clone(),
    ));
    (live, task)
}

async fn subscriptions_of(e2: &str) -> f64 {
    match http(metrics_addr(e2), "GET", "/metrics").await {
        Some((200, text)) => sample(&text, "ric_subscriptions_total").unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Each RIC saw only its own streams, none shared with another, none misrouted,
/// each complete from sequence 0 with nothing twice.
fn check_survivor(name: &str, r: &Value, seen: &mut BTreeSet<(String, String)>) {
    for k in [
        "missing",
        "duplicates",
        "out_of_order",
        "corrupt",
        "errors",
        "misrouted",
        "unknown_subscriptions",
    ] {
        assert_eq!(r[k].as_u64(), Some(0), "{name}: {k}");
    }
    let subs = r["per_subscription"].as_array().expect("per_subscription");
    assert_eq!(subs.len() as u64, u64::from(NODES) * FUNCTIONS, "{name}");
    for s in subs {
        let origin = if s["origin"].is_null() {
            s["request"].to_string()
        } else {
            s["origin"].to_string()
        };
        let key = (s["node"].to_string(), origin);
        assert!(
            seen.insert(key.clone()),
            "{name}: {key:?} also reached another RIC"
        );
        assert_eq!(s["first_seq"].as_u64(), Some(0), "{name}: {key:?}");
        assert_eq!(
            s["received"].as_u64().map(|r| r.saturating_sub(1)),
            s["max_seq"].as_u64(),
            "{name}: {key:?} has a gap"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn shared_nodes_route_every_indication_to_its_subscriber_and_a_dead_ric_is_cleaned_up() {
    if !rig::sctp_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("e2lb-router-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut rics = start_rics(&dir);
    for (name, e2) in RICS {
        rigproc::metrics_up(name, metrics_addr(e2), POLL).await;
    }
    let cfg = config(&dir);
    let admin = addr(ADMIN);
    let mut e2lb = start_e2lb(&cfg, dir.join("e2lb.log"), admin, PROC, POLL).await;
    let (live, task) = nodes();
    wait_for(
        "every RIC subscribed to every function of every node",
        Duration::from_secs(90),
        POLL,
        || async {
            let mut all = true;
            for (_, e2) in RICS {
                all &= subscriptions_of(e2).await >= (u64::from(NODES) * FUNCTIONS) as f64;
            }
            all
        },
    )
    .await;
    // One node's table: three pods, six node-side subscriptions, the RICs' ids colliding.
    let list = api(admin, "/api/v1/associations").await;
    let first = &list["associations"][0];
    assert_eq!(first["mode"], "router", "{first}");
    let id = first["id"].as_u64().expect("id");
    let table = api(admin, &format!("/api/v1/associations/{id}/router")).await;
    let subs = table["subscriptions"].as_array().expect("subscriptions");
    assert_eq!(subs.len() as u64, 3 * FUNCTIONS, "{table}");
    let node_ids: BTreeSet<String> = subs.iter().map(|s| s["node_id"].to_string()).collect();
    let pod_ids: BTreeSet<String> = subs
        .iter()
        .map(|s| s["subscribers"][0]["pod_id"].to_string())
        .collect();
    assert_eq!(node_ids.len(), subs.len(), "unique at the node: {table}");
    assert_eq!(
        pod_ids.len() as u64,
        FUNCTIONS,
        "colliding at the RICs: {table}"
    );
    println!("router table of one node: {table}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // ric-r2 dies: its subscriptions are deleted at every node.
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(rics[2].pid(), libc::SIGKILL);
    }
    let deleted = "e2lb_router_subscriptions_total{outcome=\"deleted\"}";
    wait_for(
        "the dead RIC's subscriptions deleted at the nodes",
        Duration::from_secs(30),
        POLL,
        || async {
            sample(&admin_metrics(admin).await, deleted).unwrap_or(0.0)
                >= (u64::from(NODES) * FUNCTIONS) as f64
        },
    )
    .await;
    let table = api(admin, &format!("/api/v1/associations/{id}/router")).await;
    assert_eq!(
        table["subscriptions"].as_array().map(Vec::len) as Option<usize>,
        Some(2 * FUNCTIONS as usize),
        "{table}"
    );
    // The others flow on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    live.stop();
    let n = task.await.expect("nodes");
    let mut seen = BTreeSet::new();
    let mut received = 0;
    for (r, (name, _)) in rics.iter_mut().zip(RICS).take(2) {
        r.terminate(Duration::from_secs(10)).await;
        let report = read_json(&dir.join(format!("{name}.json")));
        check_survivor(name, &report, &mut seen);
        received += report["indications"].as_u64().unwrap_or(0);
    }
    let m = admin_metrics(admin).await;
    e2lb.terminate(Duration::from_secs(10)).await;
    assert_eq!(n.errors, 0, "node errors: {:?}", n.error_samples);
    assert_eq!(n.setups_ok, u64::from(NODES), "one E2 Setup per node");
    assert_eq!(n.reconnects, 0, "a node association restarted");
    assert_eq!(n.subscriptions, u64::from(NODES) * FUNCTIONS * 3);
    assert_eq!(n.subscription_deletes, u64::from(NODES) * FUNCTIONS);
    println!(
        "router over SCTP: {} indications sent by {NODES} nodes; the two surviving RICs received {received} on {} streams, none lost, misrouted or twice; {} subscriptions of the killed RIC deleted at the nodes; e2lb routed {} to RICs",
        n.indications_sent,
        seen.len(),
        n.subscription_deletes,
        rigproc::sum_of(&m, "e2lb_messages_forwarded_total"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
