//! The admin HTTP server end to end over a real TCP socket on loopback.
//!
//! `routes_answer` checks the plain routes on a bare pool. `admin_api_end_to_end`
//! runs a whole e2lb in-process on the in-memory transport — three RIC
//! simulators (with their `/metrics` on loopback TCP, probed by exposition),
//! the proxy with the live Bull-and-Bear balancer and its owner task, the
//! admin server, and groups of simulated E2 nodes — and drives the JSON API:
//! listing, adding (and every rejection), draining, removing (immediately and
//! once the last association is gone), associations, balancer decisions,
//! readiness and the metrics page.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/adminhttp.rs"]
mod adminhttp;

use adminhttp::{call, get};
use e2lb::admin::{self, AdminState};
use e2lb::balance::live::{self, BalanceSettings, LiveBalancer};
use e2lb::balance::{Backend, Pool};
use e2lb::probe::{ProbeConfig, Prober, Source};
use e2lb::proxy::{self, AssocTable, Metrics, ProxyConfig, Shared};
use e2lb::sim::{
    bind_metrics, run_nodes, run_ric, serve_metrics_on, NodeLive, NodeReport, NodeSimConfig,
    RicLive, RicReport, RicSimConfig, TrafficClass,
};
use e2lb::transport::mem::{MemConnector, MemNet};
use e2lb::transport::Options;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);

/// An error answer: the expected status and `{"error": "<non-empty>"}`.
#[track_caller]
fn assert_error(got: &(u16, Value), status: u16, what: &str) {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    let msg = got.1["error"].as_str().unwrap_or_default();
    assert!(!msg.is_empty(), "{what}: no error message in {}", got.1);
}

/// Evaluates the async block `$probe` every 50 ms until it yields `Some(v)`
/// (the macro's value), failing after [`DEADLINE`].
macro_rules! eventually {
    ($what:expr, $probe:expr) => {{
        let start = Instant::now();
        loop {
            if let Some(v) = $probe.await {
                break v;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{}: not reached within {DEADLINE:?}",
                $what
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

#[tokio::test]
async fn routes_answer() {
    let metrics = Arc::new(Metrics::new().unwrap());
    metrics.associations_total.inc();
    let pool = Arc::new(Pool::new(vec![Backend::new(
        0,
        "ric-0",
        "127.0.0.1:36421".parse().unwrap(),
    )]));
    let live = Arc::new(
        LiveBalancer::new(
            BalanceSettings::default(),
            &pool,
            &metrics.registry,
            std::time::Instant::now(),
        )
        .unwrap(),
    );
    let state = Arc::new(AdminState::new(
        metrics,
        pool,
        live,
        Arc::new(AssocTable::new()),
    ));
    let l = admin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(admin::serve(l, state.clone(), async move {
        s.cancelled().await
    }));

    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("e2lb_associations_accepted_total 1"),
        "{body}"
    );
    assert!(body.contains("# TYPE e2lb_stream_fallbacks_total counter"));
    assert!(body.contains("e2lb_bnb_mode 0"), "{body}");
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("not listening yet"), "{body}");
    state.ready.store(true, Ordering::Relaxed);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    assert_error(&call(addr, "GET", "/nope", None).await, 404, "unknown path");
    assert_error(
        &call(addr, "GET", "/api/v1/nope", None).await,
        404,
        "unknown API path",
    );
    assert_error(
        &call(addr, "POST", "/healthz", Some("{}")).await,
        405,
        "POST /healthz",
    );
    assert_error(
        &call(addr, "PUT", "/api/v1/backends", Some("{}")).await,
        405,
        "PUT backends",
    );
    assert_error(
        &call(addr, "PATCH", "/api/v1/balancer", None).await,
        405,
        "PATCH balancer",
    );
    // With no owner task the first published view is what the API shows.
    let (code, v) = call(addr, "GET", "/api/v1/backends/ric-0", None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "open");
    assert_eq!(v["probe"], Value::Null, "never probed");
    stop.cancel();
    task.await.unwrap();
}

/// A RIC simulator on the in-memory transport, its `/metrics` on loopback TCP.
struct Ric {
    name: String,
    addr: SocketAddr,
    metrics_url: String,
    live: Arc<RicLive>,
    task: JoinHandle<RicReport>,
}

/// A group of simulated E2 nodes started together.
struct Nodes {
    live: Arc<NodeLive>,
    task: JoinHandle<NodeReport>,
    count: u32,
    /// Node ids (hex) of this group, as the associations API shows them.
    ids: Vec<String>,
}

/// e2lb in-process: RICs, proxy, owner task, admin server.
struct Stack {
    net: MemNet,
    listen: SocketAddr,
    admin: SocketAddr,
    shared: Arc<Shared<MemConnector>>,
    state: Arc<AdminState>,
    rics: Vec<Ric>,
    stop_rics: CancellationToken,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    next_node: u32,
}

impl Stack {
    async fn start(n: u8) -> Stack {
        let net = MemNet::new();
        let stop_rics = CancellationToken::new();
        let stop = CancellationToken::new();
        let mut rics = Vec::new();
        let mut backends = Vec::new();
        for i in 0..n {
            let name = format!("ric-{i}");
            let addr: SocketAddr = format!("10.0.1.{}:36422", i + 1).parse().expect("addr");
            let listener = net.listen(addr, Options::default()).expect("listen");
            let live = RicLive::new();
            let ml = bind_metrics("127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("bind metrics");
            let metrics_url = format!("http://{}/metrics", ml.local_addr().expect("addr"));
            let s = stop_rics.clone();
            tokio::spawn(serve_metrics_on(ml, live.clone(), async move {
                s.cancelled().await
            }));
            let cfg = RicSimConfig {
                name: name.clone(),
                ric_id: u32::from(i) + 1,
                requestor_id: 100 + u16::from(i),
                ..RicSimConfig::default()
            };
            let s = stop_rics.clone();
            let task = tokio::spawn(run_ric(listener, cfg, live.clone(), async move {
                s.cancelled().await
            }));
            backends.push(Backend::new(u32::from(i), &name, addr).with_metrics(&metrics_url));
            rics.push(Ric {
                name,
                addr,
                metrics_url,
                live,
                task,
            });
        }

        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let settings = BalanceSettings {
            publish_interval: Duration::from_millis(100),
            ..BalanceSettings::default()
        };
        let shared = Arc::new(
            Shared::with_balance(
                ProxyConfig::default(),
                Arc::new(Pool::new(backends)),
                settings,
                net.connector("10.0.0.1:0".parse().expect("addr"), Options::default()),
                metrics.clone(),
            )
            .expect("shared"),
        );
        let prober = Prober::new(
            ProbeConfig {
                tick: Duration::from_millis(200),
                timeout: Duration::from_millis(200),
                max_age: Duration::from_secs(3),
                ..ProbeConfig::default()
            },
            Source::Exposition,
        )
        .expect("prober");
        let mut tasks = Vec::new();
        let s = stop.clone();
        tasks.push(tokio::spawn(live::run(
            shared.balance.clone(),
            shared.pool.clone(),
            Some(prober),
            async move { s.cancelled().await },
        )));
        let listen: SocketAddr = "10.0.0.100:36421".parse().expect("addr");
        let pl = net.listen(listen, Options::default()).expect("listen");
        let s = stop.clone();
        tasks.push(tokio::spawn(proxy::serve(pl, shared.clone(), async move {
            s.cancelled().await
        })));
        let state = AdminState::new(
            metrics,
            shared.pool.clone(),
            shared.balance.clone(),
            shared.associations.clone(),
        );
        state.ready.store(true, Ordering::Relaxed);
        let state = Arc::new(state);
        let al = admin::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind admin");
        let admin = al.local_addr().expect("addr");
        let s = stop.clone();
        tasks.push(tokio::spawn(admin::serve(al, state.clone(), async move {
            s.cancelled().await
        })));
        Stack {
            net,
            listen,
            admin,
            shared,
            state,
            rics,
            stop_rics,
            stop,
            tasks,
            next_node: 1,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        call(self.admin, method, path, body).await
    }

    async fn backend(&self, name: &str) -> Value {
        let (code, v) = self
            .call("GET", &format!("/api/v1/backends/{name}"), None)
            .await;
        assert_eq!(code, 200, "GET backend {name}: {v}");
        v
    }

    async fn backend_names(&self) -> Vec<String> {
        let (code, v) = self.call("GET", "/api/v1/backends", None).await;
        assert_eq!(code, 200, "{v}");
        v["backends"]
            .as_array()
            .expect("backends array")
            .iter()
            .map(|b| b["name"].as_str().expect("name").to_owned())
            .collect()
    }

    async fn associations(&self) -> Vec<Value> {
        let (code, v) = self.call("GET", "/api/v1/associations", None).await;
        assert_eq!(code, 200, "{v}");
        let list = v["associations"].as_array().expect("array").clone();
        assert_eq!(v["count"].as_u64(), Some(list.len() as u64), "{v}");
        list
    }

    /// Waits until the published view shows `name` open or not (new
    /// associations are placed on the published view, so membership
    /// changes take effect for placement once the owner task publishes).
    async fn wait_open(&self, name: &str, open: bool) {
        eventually!(&format!("{name} open={open} in the balancer view"), async {
            let (code, v) = self.call("GET", "/api/v1/balancer", None).await;
            assert_eq!(code, 200, "{v}");
            v["scores"]
                .as_array()
                .expect("scores")
                .iter()
                .any(|s| s["backend"] == name && s["open"] == open)
                .then_some(())
        })
    }

    /// Starts `count` nodes and waits until each has an association homed
    /// on a backend; records their node ids.
    async fn start_nodes(&mut self, count: u32) -> Nodes {
        let before: Vec<String> = self
            .associations()
            .await
            .iter()
            .filter_map(|a| a["node"].as_str().map(str::to_owned))
            .collect();
        let live = NodeLive::new();
        let cfg = NodeSimConfig {
            target: self.listen,
            nodes: count,
            first_node_id: self.next_node,
            class: TrafficClass::Custom {
                period: Duration::from_millis(100),
                payload: 64,
            },
            duration: Duration::from_secs(600),
            drain: Duration::from_millis(50),
            ..NodeSimConfig::default()
        };
        self.next_node += count;
        let connector = self
            .net
            .connector("10.0.2.1:0".parse().expect("addr"), Options::default());
        let task = tokio::spawn(run_nodes(connector, cfg, live.clone()));
        let ids = eventually!("the nodes' associations homed on backends", async {
            if live.setups_ok.load(Ordering::Relaxed) < u64::from(count) {
                return None;
            }
            let list = self.associations().await;
            let new: Vec<String> = list
                .iter()
                .filter(|a| !a["backend"].is_null())
                .filter_map(|a| a["node"].as_str())
                .filter(|n| !before.iter().any(|b| b == n))
                .map(str::to_owned)
                .collect();
            (new.len() == count as usize).then_some(new)
        });
        Nodes {
            live,
            task,
            count,
            ids,
        }
    }

    /// Backend name per association of `nodes`.
    async fn homes(&self, nodes: &Nodes) -> Vec<String> {
        self.associations()
            .await
            .iter()
            .filter(|a| {
                a["node"]
                    .as_str()
                    .is_some_and(|n| nodes.ids.iter().any(|i| i == n))
            })
            .map(|a| a["backend"].as_str().unwrap_or("-").to_owned())
            .collect()
    }

    async fn stop_nodes(&self, nodes: Nodes) {
        nodes.live.stop();
        let report = nodes.task.await.expect("node task");
        assert_eq!(report.setups_ok, u64::from(nodes.count), "{report:?}");
        assert_eq!(report.setups_failed, 0, "{report:?}");
        assert_eq!(report.reconnects, 0, "{report:?}");
    }

    async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            t.await.expect("e2lb task");
        }
        self.stop_rics.cancel();
        for r in self.rics {
            let report = r.task.await.expect("ric task");
            assert_eq!(report.errors, 0, "{}: {report:?}", r.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_end_to_end() {
    let t0 = Instant::now();
    let mut st = Stack::start(3).await;
    let admin = st.admin;

    // Probes reach the balancer: every backend scored on a probed CPU figure.
    eventually!("all three backends probed", async {
        let (_, v) = st.call("GET", "/api/v1/backends", None).await;
        let list = v["backends"].as_array()?.clone();
        (list.len() == 3
            && list.iter().all(|b| {
                b["score"]["cpu_source"] == "probed"
                    && b["probe"]["successes_total"].as_u64() > Some(0)
            }))
        .then_some(())
    });

    // --- Listing.
    let (code, v) = st.call("GET", "/api/v1/backends", None).await;
    assert_eq!(code, 200, "{v}");
    let list = v["backends"].as_array().expect("array");
    for (b, ric) in list.iter().zip(&st.rics) {
        assert_eq!(b["name"], ric.name.as_str(), "{b}");
        assert_eq!(b["addr"], ric.addr.to_string(), "{b}");
        assert_eq!(b["metrics"], ric.metrics_url.as_str(), "{b}");
        assert_eq!(b["status"], "open", "{b}");
        assert_eq!(b["healthy"], true, "{b}");
        assert_eq!(b["draining"], false, "{b}");
        assert_eq!(b["associations"], 0, "{b}");
        let c = b["score"]["c"].as_f64().expect("score.c");
        assert!((0.0..0.8).contains(&c), "{b}");
        assert_eq!(b["probe"]["healthy"], true, "{b}");
        assert_eq!(b["probe"]["consecutive_failures"], 0, "{b}");
    }
    let one = st.backend("ric-1").await;
    assert_eq!(one["name"], "ric-1");
    assert_eq!(one["id"], 1);
    let missing = st.call("GET", "/api/v1/backends/ric-7", None).await;
    assert_error(&missing, 404, "unknown backend");
    assert!(
        missing.1["error"].as_str().unwrap().contains("ric-7"),
        "{}",
        missing.1
    );

    // --- Adding, and every way to get it wrong.
    let (code, v) = st
        .call(
            "POST",
            "/api/v1/backends",
            Some(
                r#"{"name":"ric-9","addr":"127.0.9.9:36421","secondary_addrs":["127.0.19.9:36421"]}"#,
            ),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["name"], "ric-9");
    assert_eq!(v["addr"], "127.0.9.9:36421");
    assert_eq!(
        v["secondary_addrs"],
        serde_json::json!(["127.0.19.9:36421"])
    );
    assert_eq!(
        v["metrics"],
        Value::Null,
        "no default metrics URL configured"
    );
    assert_eq!(v["associations"], 0);
    assert!(st.backend_names().await.contains(&"ric-9".to_owned()));
    assert_eq!(st.backend("ric-9").await["status"], "open");
    for (body, status, what) in [
        (
            r#"{"name":"ric-9","addr":"127.0.9.8:36421"}"#,
            409,
            "same name",
        ),
        (
            r#"{"name":"ric-10","addr":"127.0.9.9:36421"}"#,
            409,
            "same address",
        ),
        (
            r#"{"name":"ric-10","addr":"10.0.1.1:36422"}"#,
            409,
            "address of ric-0",
        ),
        (r#"{"name":"ric-10","#, 400, "bad JSON"),
        ("", 400, "empty body"),
        (r#"{"name":"ric-10"}"#, 400, "missing addr"),
        (
            r#"{"name":"ric-10","addr":"127.0.9.10:1","weight":3}"#,
            400,
            "unknown field",
        ),
        (
            r#"{"name":"ric-10","addr":"not-an-address"}"#,
            400,
            "bad addr",
        ),
        (r#"{"name":"ric-10","addr":"127.0.9.10:0"}"#, 400, "port 0"),
        (
            r#"{"name":"ric-10","addr":"127.0.9.10:1","secondary_addrs":["127.0.19.10:2"]}"#,
            400,
            "secondary address on another port",
        ),
        (
            r#"{"name":"ric-10","addr":"127.0.9.10:1","secondary_addrs":["127.0.9.10:1"]}"#,
            400,
            "secondary address = addr",
        ),
        (
            r#"{"name":"ric-10","addr":"127.0.9.10:1","secondary_addrs":["nope"]}"#,
            400,
            "bad secondary address",
        ),
        (
            r#"{"name":"ric 10","addr":"127.0.9.10:1"}"#,
            400,
            "name with a space",
        ),
        (r#"{"name":"","addr":"127.0.9.10:1"}"#, 400, "empty name"),
        (
            r#"{"name":"ric-10","addr":"127.0.9.10:1","metrics":"ftp://127.0.0.1/metrics"}"#,
            400,
            "metrics URL not http",
        ),
        (
            r#"{"name":"ric-10","addr":"127.0.9.10:1","metrics":"http://"}"#,
            400,
            "metrics URL without host",
        ),
    ] {
        let got = st.call("POST", "/api/v1/backends", Some(body)).await;
        assert_error(&got, status, what);
    }
    assert_eq!(
        st.backend_names().await,
        ["ric-0", "ric-1", "ric-2", "ric-9"],
        "no rejected request changed the pool"
    );

    // --- Removing a backend without associations: gone at once.
    st.wait_open("ric-9", true).await;
    let (code, v) = st.call("DELETE", "/api/v1/backends/ric-9", None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v, json!({"name": "ric-9", "removed": true}));
    assert_eq!(st.backend_names().await, ["ric-0", "ric-1", "ric-2"]);
    assert_error(
        &st.call("GET", "/api/v1/backends/ric-9", None).await,
        404,
        "removed backend",
    );
    assert_error(
        &st.call("DELETE", "/api/v1/backends/ric-9", None).await,
        404,
        "removing twice",
    );
    assert_error(
        &st.call("POST", "/api/v1/backends/ric-9/drain", None).await,
        404,
        "draining an unknown backend",
    );

    // --- Draining: new nodes avoid the drained backend.
    let (code, v) = st.call("POST", "/api/v1/backends/ric-0/drain", None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "draining");
    assert_eq!(v["draining"], true);
    st.wait_open("ric-0", false).await;
    let (code, body) = get(admin, "/readyz").await;
    assert_eq!(code, 200, "two backends still open: {body}");
    let group_a = st.start_nodes(6).await;
    let homes = st.homes(&group_a).await;
    assert_eq!(homes.len(), 6, "{homes:?}");
    assert!(
        homes.iter().all(|h| h == "ric-1" || h == "ric-2"),
        "a node landed on the drained ric-0: {homes:?}"
    );
    assert_eq!(st.backend("ric-0").await["associations"], 0);
    assert_eq!(
        st.backend("ric-1").await["associations"].as_u64().unwrap()
            + st.backend("ric-2").await["associations"].as_u64().unwrap(),
        6
    );
    assert_eq!(st.backend("ric-0").await["status"], "draining");

    // Undrain ric-0; drain the two others: the next nodes all go to ric-0.
    let (code, v) = st
        .call("DELETE", "/api/v1/backends/ric-0/drain", None)
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "open");
    assert_eq!(v["draining"], false);
    for n in ["ric-1", "ric-2"] {
        let (code, v) = st
            .call("POST", &format!("/api/v1/backends/{n}/drain"), None)
            .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["status"], "draining");
    }
    st.wait_open("ric-0", true).await;
    st.wait_open("ric-1", false).await;
    st.wait_open("ric-2", false).await;
    let group_b = st.start_nodes(3).await;
    assert_eq!(st.homes(&group_b).await, ["ric-0"; 3]);
    assert_eq!(st.backend("ric-0").await["associations"], 3);
    assert_eq!(
        st.rics[0].live.associations_total.load(Ordering::Relaxed),
        3,
        "the RIC behind ric-0 saw exactly group B"
    );
    for n in ["ric-1", "ric-2"] {
        let (code, v) = st
            .call("DELETE", &format!("/api/v1/backends/{n}/drain"), None)
            .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["status"], "open");
    }

    // --- Associations.
    let assocs = st.associations().await;
    assert_eq!(assocs.len(), 9, "{assocs:?}");
    for a in &assocs {
        let node = a["node"].as_str().expect("node id");
        assert!(
            !node.is_empty() && node.bytes().all(|b| b.is_ascii_hexdigit()),
            "node id is hex: {a}"
        );
        let backend = a["backend"].as_str().expect("backend");
        assert!(["ric-0", "ric-1", "ric-2"].contains(&backend), "{a}");
        assert!(a["streams"]["in"].as_u64().unwrap() >= 1, "{a}");
        assert!(a["streams"]["out"].as_u64().unwrap() >= 1, "{a}");
        let age = a["age_s"].as_f64().expect("age");
        assert!((0.0..60.0).contains(&age), "{a}");
        assert!(a["accepted_at"].as_str().is_some(), "{a}");
        assert!(a["id"].as_u64().is_some(), "{a}");
    }
    let mut nodes: Vec<&str> = assocs.iter().filter_map(|a| a["node"].as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    assert_eq!(nodes.len(), 9, "one association per node");

    // --- Removing a backend with associations: 202, then gone once they close.
    let (code, v) = st.call("DELETE", "/api/v1/backends/ric-0", None).await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(
        v,
        json!({"name": "ric-0", "removed": false, "draining": true, "associations": 3})
    );
    let r0 = st.backend("ric-0").await;
    assert_eq!(r0["status"], "removing", "{r0}");
    assert_eq!(r0["removing"], true, "{r0}");
    assert_eq!(r0["draining"], true, "{r0}");
    assert_eq!(r0["associations"], 3, "{r0}");
    st.wait_open("ric-0", false).await;
    // Removing again while pending is still accepted (and still pending).
    assert_eq!(
        st.call("DELETE", "/api/v1/backends/ric-0", None).await.0,
        202
    );
    // The nodes homed there close their associations: the owner task sweeps it.
    st.stop_nodes(group_b).await;
    eventually!("ric-0 swept from the pool", async {
        (st.backend_names().await == ["ric-1", "ric-2"]).then_some(())
    });
    assert_error(
        &st.call("GET", "/api/v1/backends/ric-0", None).await,
        404,
        "swept backend",
    );
    assert!(st
        .associations()
        .await
        .iter()
        .all(|a| a["backend"] != "ric-0"));
    assert_eq!(st.associations().await.len(), 6, "group A untouched");

    // --- Balancer.
    let (code, v) = st.call("GET", "/api/v1/balancer", None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["mode"], "bull", "{v}");
    assert_eq!(v["pool"]["open"], 2, "{v}");
    let scores = v["scores"].as_array().expect("scores");
    let names: Vec<&str> = scores
        .iter()
        .filter_map(|s| s["backend"].as_str())
        .collect();
    assert_eq!(names, ["ric-1", "ric-2"], "{v}");
    for s in scores {
        assert!(s["c"].as_f64().is_some(), "{s}");
        assert_eq!(s["open"], true, "{s}");
        assert_eq!(s["cpu_source"], "probed", "{s}");
    }
    let assoc_sum: u64 = scores
        .iter()
        .map(|s| s["associations"].as_u64().unwrap())
        .sum();
    assert_eq!(assoc_sum, 6, "{v}");
    let decisions = v["decisions"].as_array().expect("decisions");
    let picks: Vec<&Value> = decisions.iter().filter(|d| d["kind"] == "pick").collect();
    assert_eq!(picks.len(), 9, "one pick per node: {decisions:?}");
    for p in &picks {
        assert_eq!(p["mode"], "bull", "{p}");
        let reason = p["reason"].as_str().expect("reason");
        assert!(["power_of_two", "only"].contains(&reason), "{p}");
        assert!(p["node"].as_str().is_some_and(|n| !n.is_empty()), "{p}");
        let compared = p["compared"].as_array().expect("compared");
        let want = if reason == "only" { 1 } else { 2 };
        assert_eq!(compared.len(), want, "{p}");
        assert_eq!(compared[0]["backend"], p["backend"], "winner first: {p}");
        for c in compared {
            assert!(c["c"].as_f64().is_some(), "{p}");
            assert_eq!(c["hot"], false, "{p}");
        }
    }
    // While ric-0 was the only open backend (group B), every pick was "only".
    let group_b_picks = picks.iter().filter(|p| p["backend"] == "ric-0").count();
    assert_eq!(group_b_picks, 3, "{picks:?}");
    assert!(picks
        .iter()
        .filter(|p| p["backend"] == "ric-0")
        .all(|p| p["reason"] == "only" && p["available"] == 1));
    // Group A chose between ric-1 and ric-2.
    assert!(picks
        .iter()
        .filter(|p| p["backend"] != "ric-0")
        .all(|p| p["reason"] == "power_of_two" && p["available"] == 2));

    // --- Metrics.
    let (code, text) = get(admin, "/metrics").await;
    assert_eq!(code, 200);
    for want in [
        r#"e2lb_bnb_picks_total{mode="bull",reason="power_of_two"} 6"#,
        r#"e2lb_bnb_picks_total{mode="bull",reason="only"} 3"#,
        r#"e2lb_backend_score{backend="ric-1"}"#,
        r#"e2lb_backend_score{backend="ric-2"}"#,
        r#"e2lb_backend_membership_changes_total{change="added"} 1"#,
        r#"e2lb_backend_membership_changes_total{change="removed"} 2"#,
        r#"e2lb_backend_membership_changes_total{change="drained"} 3"#,
        r#"e2lb_backend_membership_changes_total{change="undrained"} 3"#,
        r#"e2lb_probes_total{backend="ric-1",outcome="ok"}"#,
        r#"e2lb_backend_open{backend="ric-1"} 1"#,
        "e2lb_bnb_mode 0",
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }
    assert!(
        !text.contains(r#"e2lb_backend_score{backend="ric-0"}"#)
            && !text.contains(r#"e2lb_backend_score{backend="ric-9"}"#),
        "a removed backend's series are dropped:\n{text}"
    );
    assert_error(
        &call(admin, "POST", "/metrics", Some("{}")).await,
        405,
        "POST /metrics",
    );
    assert_error(
        &call(admin, "DELETE", "/metrics", None).await,
        405,
        "DELETE /metrics",
    );

    // --- Readiness follows the open backends.
    assert_eq!(get(admin, "/readyz").await.0, 200);
    for n in ["ric-1", "ric-2"] {
        assert_eq!(
            st.call("POST", &format!("/api/v1/backends/{n}/drain"), None)
                .await
                .0,
            200
        );
    }
    let body = eventually!("/readyz 503 with every backend drained", async {
        let (code, body) = get(admin, "/readyz").await;
        (code == 503).then_some(body)
    });
    assert!(body.contains("no backend takes new associations"), "{body}");
    assert!(!st.state.is_ready());
    // Drained backends keep their associations.
    assert_eq!(st.associations().await.len(), 6);
    assert_eq!(
        st.call("DELETE", "/api/v1/backends/ric-2/drain", None)
            .await
            .0,
        200
    );
    eventually!("/readyz 200 again", async {
        (get(admin, "/readyz").await.0 == 200).then_some(())
    });
    assert_eq!(st.shared.pool.len(), 2);

    st.stop_nodes(group_a).await;
    eventually!("every association closed", async {
        st.associations().await.is_empty().then_some(())
    });
    st.shutdown().await;
    eprintln!("admin_api_end_to_end took {:?}", t0.elapsed());
}
