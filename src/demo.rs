//! `e2lb demo`: RIC simulators, e2lb and simulated E2 nodes in one process,
//! over kernel SCTP on loopback (or the in-memory transport with
//! `--transport mem`), on the embedded default configuration.
//!
//! It prints a live per-backend table every second and ends with a summary
//! of messages sent by the nodes, received by the RICs and lost (sent −
//! received, after a drain). The run fails (non-zero exit) if anything was lost.
//!
//! On a host whose kernel has no SCTP, [`reexec_in_rig`] runs the same command
//! inside the User-Mode-Linux rig (the script `scripts/uml-run`, embedded in
//! the binary so the demo works from any directory).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::balance::{live, Backend, Pool};
use crate::config::Config;
use crate::proxy::{self, Metrics, Shared};
use crate::sim::{
    run_nodes, run_ric, NodeLive, NodeReport, NodeSimConfig, RicLive, RicReport, RicSimConfig,
    TrafficClass,
};
use crate::transport::mem::MemNet;
use crate::transport::sctp::{SctpConnector, SctpListener};
use crate::transport::{Connector, Listener, Options};

/// The rig script, embedded so `e2lb demo` can re-run itself under User-Mode Linux.
pub const UML_RUN: &str = include_str!("../scripts/uml-run");

/// Which transport the demo runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoTransport {
    /// Kernel SCTP on loopback (re-runs itself in the UML rig when the kernel has none).
    Sctp,
    /// The in-memory transport (no kernel SCTP needed; same proxy code).
    Mem,
}

/// Knobs of a demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub duration: Duration,
    pub nodes: u32,
    pub class: TrafficClass,
    pub transport: DemoTransport,
    /// Serve the admin endpoints (from the configuration) during the run.
    pub admin: bool,
}

/// What the demo measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DemoSummary {
    pub transport: String,
    pub nodes: u32,
    pub backends: Vec<BackendSummary>,
    pub setups_ok: u64,
    pub subscriptions: u64,
    pub sent: u64,
    pub received: u64,
    pub lost: i64,
    pub gaps: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub e2e_p50_us: f64,
    pub e2e_p99_us: f64,
    pub rate_per_s: f64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BackendSummary {
    pub name: String,
    pub associations: u64,
    pub indications: u64,
}

/// Listeners and connectors of one transport.
trait Fabric {
    type L: Listener;
    type C: Connector;
    fn listen(&self, addr: SocketAddr, opts: &Options) -> anyhow::Result<Self::L>;
    fn connector(&self, opts: &Options) -> Self::C;
}

struct Sctp;
impl Fabric for Sctp {
    type L = SctpListener;
    type C = SctpConnector;
    fn listen(&self, addr: SocketAddr, opts: &Options) -> anyhow::Result<SctpListener> {
        SctpListener::bind(&[addr], opts).with_context(|| format!("SCTP listen on {addr}"))
    }
    fn connector(&self, opts: &Options) -> SctpConnector {
        SctpConnector::new(opts.clone())
    }
}

struct Mem(MemNet);
impl Fabric for Mem {
    type L = crate::transport::mem::MemListener;
    type C = crate::transport::mem::MemConnector;
    fn listen(&self, addr: SocketAddr, opts: &Options) -> anyhow::Result<Self::L> {
        Ok(self.0.listen(addr, opts.clone())?)
    }
    fn connector(&self, opts: &Options) -> Self::C {
        self.0
            .connector(SocketAddr::from(([127, 0, 0, 1], 0)), opts.clone())
    }
}

/// Run the demo and print to `out`.
pub async fn run(opts: DemoOptions, out: &mut (dyn Write + Send)) -> anyhow::Result<DemoSummary> {
    match opts.transport {
        DemoTransport::Sctp => run_on(Sctp, opts, out).await,
        DemoTransport::Mem => run_on(Mem(MemNet::new()), opts, out).await,
    }
}

async fn run_on<F: Fabric>(
    fabric: F,
    opts: DemoOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<DemoSummary> {
    let cfg = Config::embedded()?;
    let topts = cfg.transport();
    let backends = cfg.backends();
    let stop_rics = CancellationToken::new();

    // RIC simulators, one per configured backend.
    let mut rics = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let listener = fabric.listen(b.addr, &topts)?;
        let live = RicLive::new();
        let rcfg = RicSimConfig {
            name: b.name.clone(),
            ric_id: i as u32 + 1,
            requestor_id: 100 + i as u16,
            ..RicSimConfig::default()
        };
        if let Some(addr) = metrics_addr(b)? {
            let l = crate::sim::bind_metrics(addr)
                .await
                .with_context(|| format!("serving {}'s metrics on {addr}", b.name))?;
            let stop = stop_rics.clone();
            tokio::spawn(crate::sim::serve_metrics_on(l, live.clone(), async move {
                stop.cancelled().await
            }));
        }
        let stop = stop_rics.clone();
        let task = tokio::spawn(run_ric(listener, rcfg, live.clone(), async move {
            stop.cancelled().await
        }));
        rics.push((b.name.clone(), live, task));
    }

    // e2lb itself.
    let metrics = Arc::new(Metrics::new()?);
    let shared = Arc::new(Shared::with_balance(
        cfg.proxy(),
        Arc::new(Pool::with_latency(backends.clone(), cfg.latency())),
        cfg.balance_settings()?,
        fabric.connector(&topts),
        metrics.clone(),
    )?);
    let stop_proxy = CancellationToken::new();
    let sp = stop_proxy.clone();
    let balance_task = tokio::spawn(live::run(
        shared.balance.clone(),
        shared.pool.clone(),
        cfg.prober()?,
        async move { sp.cancelled().await },
    ));
    let balance = shared.balance.clone();
    let listen = cfg
        .proxy
        .listen
        .first()
        .and_then(|e| e.primary())
        .context("proxy.listen is empty")?;
    let proxy_listener = fabric.listen(listen, &topts)?;
    let sp = stop_proxy.clone();
    let proxy_task = tokio::spawn(proxy::serve(proxy_listener, shared.clone(), async move {
        sp.cancelled().await
    }));
    let admin_task = if opts.admin {
        let state = crate::admin::AdminState::new(
            metrics.clone(),
            shared.pool.clone(),
            shared.balance.clone(),
            shared.associations.clone(),
        );
        state.ready.store(true, Relaxed);
        let state = Arc::new(state);
        match crate::admin::bind(cfg.admin.listen).await {
            Ok(l) => {
                let sp = stop_proxy.clone();
                writeln!(out, "admin: http://{}/metrics", cfg.admin.listen)?;
                Some(tokio::spawn(crate::admin::serve(l, state, async move {
                    sp.cancelled().await
                })))
            }
            Err(e) => {
                writeln!(
                    out,
                    "admin endpoint not started ({}: {e})",
                    cfg.admin.listen
                )?;
                None
            }
        }
    } else {
        None
    };

    // The E2 nodes.
    let node_live = NodeLive::new();
    let ncfg = NodeSimConfig {
        target: listen,
        nodes: opts.nodes,
        class: opts.class,
        duration: opts.duration,
        drain: Duration::from_secs(2),
        connect_spread: Duration::from_millis(500),
        ..NodeSimConfig::default()
    };
    writeln!(
        out,
        "e2lb demo: {} RIC simulators, e2lb on {listen}, {} E2 nodes (class {:?}: {} B every {:?}), {:?} over {}",
        rics.len(),
        opts.nodes,
        opts.class,
        opts.class.payload(),
        opts.class.period(),
        opts.duration,
        match opts.transport {
            DemoTransport::Sctp => "kernel SCTP",
            DemoTransport::Mem => "the in-memory transport",
        }
    )?;
    let mut nodes = tokio::spawn(run_nodes(fabric.connector(&topts), ncfg, node_live.clone()));

    // Live table, once a second, until the nodes are done.
    let tty = std::io::stdout().is_terminal();
    let mut last: Vec<u64> = vec![0; rics.len()];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let started = Instant::now();
    let node_report: NodeReport = loop {
        tokio::select! {
            r = &mut nodes => break r.context("node simulators")?,
            _ = tick.tick() => {
                let mut table = String::new();
                if tty {
                    table.push_str(&format!("\x1b[{}A\x1b[J", rics.len() + 2).repeat(usize::from(started.elapsed() > Duration::from_millis(1500))));
                }
                let view = balance.view();
                table.push_str(&format!(
                    "t={:>4.0}s  nodes up {:>3}  subs {:>4}  sent {:>9}  balancer {}\n  {:<8} {:>6} {:>10} {:>9} {:>6} {:>6}\n",
                    started.elapsed().as_secs_f64(),
                    node_live.setups_ok.load(Relaxed),
                    node_live.subscriptions.load(Relaxed),
                    node_live.indications_sent.load(Relaxed),
                    view.balancer.mode().as_str(),
                    "backend", "assocs", "ind/s", "in-flight", "C", "CPU"
                ));
                for (i, (name, live, _)) in rics.iter().enumerate() {
                    let now = live.indications.load(Relaxed);
                    let rate = now - last[i];
                    last[i] = now;
                    let (c, cpu) = score_of(&view, &shared.pool, name);
                    table.push_str(&format!(
                        "  {:<8} {:>6} {:>10} {:>9} {:>6} {:>6}\n",
                        name,
                        metrics.associations.with_label_values(&[name]).get(),
                        rate,
                        metrics.in_flight.with_label_values(&[name]).get(),
                        c,
                        cpu,
                    ));
                }
                write!(out, "{table}")?;
                out.flush()?;
            }
        }
    };

    // Drain done inside run_nodes; stop the proxy, then the RICs, and collect.
    stop_proxy.cancel();
    let _ = proxy_task.await;
    let _ = balance_task.await;
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    stop_rics.cancel();
    let mut reports: Vec<RicReport> = Vec::new();
    for (_, _, task) in rics {
        reports.push(task.await.context("RIC simulator")?);
    }
    let received: u64 = reports.iter().map(|r| r.indications).sum();
    let p50 = reports
        .iter()
        .map(|r| r.e2e_latency.p50_us)
        .fold(0.0, f64::max);
    let p99 = reports
        .iter()
        .map(|r| r.e2e_latency.p99_us)
        .fold(0.0, f64::max);
    let summary = DemoSummary {
        transport: format!("{:?}", opts.transport).to_lowercase(),
        nodes: opts.nodes,
        backends: reports
            .iter()
            .map(|r| BackendSummary {
                name: r.name.clone(),
                associations: r.associations,
                indications: r.indications,
            })
            .collect(),
        setups_ok: node_report.setups_ok,
        subscriptions: node_report.subscriptions,
        sent: node_report.indications_sent,
        received,
        lost: node_report.indications_sent as i64 - received as i64,
        gaps: reports.iter().map(|r| r.gaps).sum(),
        duplicates: reports.iter().map(|r| r.duplicates).sum(),
        out_of_order: reports.iter().map(|r| r.out_of_order).sum(),
        e2e_p50_us: p50,
        e2e_p99_us: p99,
        rate_per_s: node_report.indication_rate,
    };
    writeln!(out, "\n== summary")?;
    for b in &summary.backends {
        writeln!(
            out,
            "  {:<8} associations {:>4}  indications received {:>9}",
            b.name, b.associations, b.indications
        )?;
    }
    writeln!(
        out,
        "  nodes set up {}/{}  subscriptions {}  rate {:.0} indications/s  e2e latency p50 {:.0} µs p99 {:.0} µs (worst backend)",
        summary.setups_ok, summary.nodes, summary.subscriptions, summary.rate_per_s, summary.e2e_p50_us, summary.e2e_p99_us
    )?;
    writeln!(
        out,
        "  messages sent by the nodes {}  received by the rics {}  lost {}  (gaps {}, duplicates {}, reordered {})",
        summary.sent, summary.received, summary.lost, summary.gaps, summary.duplicates, summary.out_of_order
    )?;
    Ok(summary)
}

/// Where a simulated RIC serves the metrics URL its backend entry names.
fn metrics_addr(b: &Backend) -> anyhow::Result<Option<SocketAddr>> {
    let Some(url) = b.metrics.as_deref() else {
        return Ok(None);
    };
    let t = crate::probe::Target::with_url(b.id, url)
        .map_err(|e| anyhow::anyhow!("metrics URL {url} of {}: {e}", b.name))?;
    let host = t.host().trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host
        .parse()
        .with_context(|| format!("the demo serves metrics on IP addresses; {url} names {host}"))?;
    Ok(Some(SocketAddr::new(ip, t.port())))
}

/// `C` and fresh CPU of one backend in the published view, formatted.
fn score_of(view: &live::View, pool: &Pool, name: &str) -> (String, String) {
    let Some(m) = pool.find(name) else {
        return ("-".into(), "-".into());
    };
    let snap = &view.snapshot;
    let Some(i) = snap.index_of(m.id()) else {
        return ("-".into(), "-".into());
    };
    let s = &snap.scores()[i];
    let cpu = match s.cpu_source {
        crate::balance::load::CpuSource::Probed => format!("{:.0}%", s.cpu * 100.0),
        crate::balance::load::CpuSource::Associations => "stale".into(),
    };
    (format!("{:.2}", s.c), cpu)
}

/// Re-run the current command inside the UML rig (kernel SCTP in a guest).
/// Returns the guest command's exit code.
pub fn reexec_in_rig(args: &[String], timeout: Duration) -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("locating the e2lb binary")?;
    let dir = tempdir()?;
    let script = dir.join("uml-run");
    std::fs::write(&script, UML_RUN).context("writing the rig script")?;
    eprintln!(
        "e2lb: this kernel has no SCTP; running the demo inside User-Mode Linux (scripts/uml-run)"
    );
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg("--timeout")
        .arg(timeout.as_secs().to_string())
        .arg("--")
        .arg(&exe)
        .args(args)
        .status()
        .context("starting the rig (bash scripts/uml-run)")?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(status.code().unwrap_or(1))
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let base =
        std::env::var_os("TMPDIR").map_or_else(|| std::path::PathBuf::from("/tmp"), Into::into);
    let dir = base.join(format!("e2lb-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
