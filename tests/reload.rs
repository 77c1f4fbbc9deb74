//! Configuration reload while running, through the admin API: a valid file
//! is applied (backends join and leave the pool, balancer, proxy and probe
//! settings change in place), what needs a restart is reported, an invalid
//! file is refused with its precise error and the running configuration stays.

#[path = "common/adminhttp.rs"]
mod adminhttp;

use std::path::Path;
use std::sync::Arc;

use adminhttp::call;
use e2lb::admin::{self, AdminState};
use e2lb::balance::Pool;
use e2lb::config::Config;
use e2lb::migrate::Executor;
use e2lb::proxy::{Metrics, Shared};
use e2lb::reload::Reloader;
use e2lb::transport::mem::MemNet;
use e2lb::transport::Options;
use tokio_util::sync::CancellationToken;

fn v1() -> String {
    r#"
[proxy]
listen = ["127.0.0.1:36421"]

[[backends]]
name = "ric-0"
addr = "127.0.30.1:36421"

[[backends]]
name = "ric-1"
addr = "127.0.30.2:36421"

[probe]
enabled = false
"#
    .to_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_valid_file_and_refuses_an_invalid_one() {
    let dir = std::env::temp_dir().join(format!("e2lb-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("e2lb.toml");
    write(&path, &v1());
    let cfg = Config::load(&path).expect("v1");
    let net = MemNet::new();
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let shared = Arc::new(
        Shared::with_balance(
            cfg.proxy(),
            Arc::new(Pool::with_latency(cfg.backends(), cfg.latency())),
            cfg.balance_settings().expect("balance"),
            net.connector("127.0.30.100:0".parse().expect("addr"), Options::default()),
            metrics.clone(),
        )
        .expect("shared"),
    );
    let executor = Arc::new(
        Executor::new(
            cfg.executor(),
            shared.pool.clone(),
            shared.balance.clone(),
            shared.associations.clone(),
            &metrics.registry,
        )
        .expect("executor"),
    );
    let (probers, mut probers_rx) = tokio::sync::watch::channel(cfg.prober().expect("prober"));
    assert!(
        probers_rx.borrow_and_update().is_none(),
        "probing is off in v1"
    );
    let proxy = shared.clone();
    let reloader = Arc::new(
        Reloader::new(
            Some(path.clone()),
            cfg.clone(),
            shared.pool.clone(),
            shared.balance.clone(),
            probers,
            Box::new(move |c| proxy.reconfigure(c)),
            executor.clone(),
            None,
            &metrics.registry,
        )
        .expect("reloader"),
    );
    let state = Arc::new(
        AdminState::new(
            metrics.clone(),
            shared.pool.clone(),
            shared.balance.clone(),
            shared.associations.clone(),
        )
        .with_reload(reloader.clone()),
    );
    let l = admin::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let at = l.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let s = stop.clone();
    let server = tokio::spawn(admin::serve(l, state, async move { s.cancelled().await }));

    // Nothing changed.
    let (code, v) = call(at, "POST", "/api/v1/config/reload", None).await;
    assert_eq!(
        (code, &v["unchanged"]),
        (200, &serde_json::json!(true)),
        "{v}"
    );

    // A backend more, other thresholds, a smaller queue, probing on, another listener.
    let v2 = v1()
        .replace(
            "127.0.0.1:36421\"]",
            "127.0.0.1:36422\"]\nqueue = 32\nmax_associations = 7\nsetup_rate_per_backend = 5",
        )
        .replace("[probe]\nenabled = false", "[probe]\nenabled = true\ntick = \"2s\"")
        + "\n[[backends]]\nname = \"ric-2\"\naddr = \"127.0.30.3:36421\"\n\n[balance]\nthreshold_cpu = 0.6\nexit_cpu = 0.4\n";
    write(&path, &v2);
    let (code, v) = call(at, "POST", "/api/v1/config/reload", None).await;
    assert_eq!(code, 200, "{v}");
    for section in ["proxy", "balance", "probe", "backends"] {
        assert!(
            v["applied"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s == section),
            "{section} applied: {v}"
        );
    }
    assert_eq!(v["backends_added"], serde_json::json!(["ric-2"]), "{v}");
    assert!(
        v["restart_needed"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s == "proxy.listen"),
        "{v}"
    );
    assert!(shared.pool.find("ric-2").is_some());
    assert_eq!(shared.config().queue, 32);
    // The association limit and the setup pace apply from the next accept / setup.
    assert_eq!(shared.config().max_associations, 7);
    assert_eq!(shared.config().setup_pace.rate, 5.0);
    assert!(
        !v["restart_needed"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s == "proxy.max_associations"),
        "{v}"
    );
    assert_eq!(shared.balance.settings().model.thresholds.cpu, 0.6);
    assert_eq!(shared.balance.settings().bnb.exit_cpu, 0.4);
    assert!(probers_rx.has_changed().expect("prober channel"));
    assert!(
        probers_rx.borrow_and_update().is_some(),
        "probing on after the reload"
    );

    // An invalid file: refused with the key, nothing changes.
    write(
        &path,
        &v2.replace("threshold_cpu = 0.6", "threshold_cpu = -3.0"),
    );
    let (code, v) = call(at, "POST", "/api/v1/config/reload", None).await;
    assert_eq!(code, 400, "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(msg.contains("threshold"), "the error names the key: {msg}");
    assert_eq!(shared.balance.settings().model.thresholds.cpu, 0.6);
    assert_eq!(shared.config().queue, 32);
    write(&path, &v2.replace("queue = 32", "queue = 32\nbogus = 1"));
    let (code, v) = call(at, "POST", "/api/v1/config/reload", None).await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("bogus"),
        "{v}"
    );

    // A backend gone from the file leaves the pool (it has no associations).
    write(
        &path,
        &v2.replace(
            "[[backends]]\nname = \"ric-1\"\naddr = \"127.0.30.2:36421\"\n",
            "",
        ),
    );
    let (code, v) = call(at, "POST", "/api/v1/config/reload", None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["backends_removed"], serde_json::json!(["ric-1"]), "{v}");
    assert!(shared.pool.find("ric-1").is_none());
    assert_eq!(reloader.current().backends.len(), 2);

    let text = metrics.render();
    for (outcome, n) in [("unchanged", 1), ("applied", 2), ("invalid", 2)] {
        let line = format!("e2lb_config_reloads_total{{outcome=\"{outcome}\"}} {n}");
        assert!(text.contains(&line), "{line}\n{text}");
    }
    stop.cancel();
    server.await.expect("admin");
    let _ = std::fs::remove_dir_all(&dir);
}
