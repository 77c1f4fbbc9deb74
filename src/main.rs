//! The `e2lb` command: the proxy, the simulators, the demo and operator tools.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use std::sync::atomic::Ordering;

use e2lb::admin::{self, AdminState};
use std::net::SocketAddr;
use std::time::Duration;

use e2lb::balance::Pool;
use e2lb::config::Config;
use e2lb::demo::{DemoOptions, DemoTransport};
use e2lb::e2ap::inspect;
use e2lb::proxy::{self, Metrics, Shared};
use e2lb::sim::{RateProfile, TrafficClass};
use e2lb::transport::sctp::{self, SctpConnector, SctpListener};

#[derive(Parser)]
#[command(
    name = "e2lb",
    version,
    about = "E2AP-aware SCTP load balancer and xApp router for near-RT RIC pods"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy (the embedded default configuration when no --config is given).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Live demo: RIC simulators, e2lb and simulated E2 nodes over kernel SCTP
    /// (inside User-Mode Linux when this kernel has no SCTP).
    Demo {
        /// How long the nodes send indications.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Number of simulated E2 nodes.
        #[arg(long, default_value_t = 30)]
        nodes: u32,
        /// Traffic class of every subscription: A, B, C, D (CORMO-RAN) or custom:PERIOD:BYTES.
        #[arg(long, default_value = "B")]
        class: TrafficClass,
        /// Transport: kernel SCTP, or the in-memory transport.
        #[arg(long, value_enum, default_value = "sctp")]
        transport: DemoTransport,
        /// Do not serve the admin endpoints during the demo.
        #[arg(long)]
        no_admin: bool,
        /// Write the summary as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the report (markdown + PNG plots of CPU, associations and
        /// replicas over time) into this directory ("" = none).
        #[arg(long, default_value = "target/demo")]
        report_dir: PathBuf,
    },
    /// Simulators (the load-test harness).
    Sim {
        #[command(subcommand)]
        cmd: SimCmd,
    },
    /// Check a configuration file and print it as understood.
    CheckConfig { config: PathBuf },
    /// Live view of a running e2lb from its admin API: backends, balancer,
    /// scaler decisions, migrations.
    Top {
        /// Base URL of the admin API.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// Environment variable holding the admin bearer token, if one is needed.
        #[arg(long)]
        token_env: Option<String>,
        /// Refresh period.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Print one screen and exit.
        #[arg(long)]
        once: bool,
    },
    /// E2AP tools.
    E2ap {
        #[command(subcommand)]
        cmd: E2apCmd,
    },
}

#[derive(Subcommand)]
enum SimCmd {
    /// N simulated E2 nodes that set up, answer subscriptions and controls, and send indications.
    Node {
        /// Where to connect (e2lb, or a RIC directly).
        #[arg(long, default_value = "127.0.0.1:36421")]
        target: SocketAddr,
        #[arg(long, default_value_t = 1)]
        nodes: u32,
        /// gNB-ID of the first node (the others count up).
        #[arg(long, default_value_t = 1)]
        first_node_id: u32,
        /// RAN function ids every node offers.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        ran_functions: Vec<u16>,
        /// Traffic class: A, B, C, D (CORMO-RAN presets) or custom:PERIOD:BYTES.
        #[arg(long, default_value = "B")]
        class: TrafficClass,
        /// Rate profile: constant, ramp:FROM:TO, diurnal:PERIOD:MIN:MAX.
        #[arg(long, default_value = "constant")]
        profile: RateProfile,
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Time associations stay open after the last indication.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        drain: Duration,
        /// PPID of node-initiated messages (70 = E2-CP; FlexRIC uses 0).
        #[arg(long, default_value_t = 70)]
        ppid: u32,
        #[arg(long, default_value_t = 0)]
        stream: u16,
        /// Write the JSON report to this file (else to stdout).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// A RIC backend that sets nodes up, subscribes to their RAN functions and counts indications.
    Ric {
        #[arg(long, default_value = "127.0.1.1:36421")]
        listen: SocketAddr,
        /// Serve Prometheus /metrics here.
        #[arg(long)]
        metrics: Option<SocketAddr>,
        #[arg(long, default_value = "ric-0")]
        name: String,
        /// Time taken to answer each request.
        #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
        service_time: Duration,
        /// CPU work spent per received indication.
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        work_per_indication: Duration,
        /// Send a RIC Control Request (ack requested) per node this often.
        #[arg(long, value_parser = humantime::parse_duration)]
        control_period: Option<Duration>,
        /// Do not subscribe to the nodes' RAN functions.
        #[arg(long)]
        no_subscribe: bool,
        /// RICrequestID requestor of this RIC's subscriptions and controls.
        #[arg(long, default_value_t = 1)]
        requestor_id: u16,
        /// Number RICrequestIDs per association from 1 (RICs started alike
        /// then collide on purpose on a node they share: router mode).
        #[arg(long)]
        ids_per_association: bool,
        /// Stop after this long (else on SIGINT/SIGTERM).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Write the JSON report to this file (else to stdout).
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum E2apCmd {
    /// Print each PDU as JSON: the routing peek's keys and the full decode.
    /// Input: hex PDUs one per line on stdin, or one binary PDU in FILE.
    Decode { file: Option<PathBuf> },
}

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run { config } => run_proxy(config),
        Cmd::CheckConfig { config } => check_config(config),
        Cmd::Demo {
            duration,
            nodes,
            class,
            transport,
            no_admin,
            report,
            report_dir,
        } => demo(
            DemoOptions {
                duration,
                nodes,
                class,
                transport,
                admin: !no_admin,
                report_dir: (!report_dir.as_os_str().is_empty()).then_some(report_dir),
            },
            report,
        ),
        Cmd::Sim { cmd } => sim(cmd),
        Cmd::Top {
            admin,
            token_env,
            interval,
            once,
        } => top(admin, token_env, interval, once),
        Cmd::E2ap {
            cmd: E2apCmd::Decode { file },
        } => decode(file),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("e2lb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(&p)?,
        None => Config::embedded()?,
    })
}

fn check_config(path: PathBuf) -> anyhow::Result<ExitCode> {
    let c = Config::load(&path)?;
    println!("{c:#?}");
    Ok(ExitCode::SUCCESS)
}

/// A clear start-up error when the kernel has no SCTP, naming the fixes.
fn require_kernel_sctp() -> anyhow::Result<()> {
    if !sctp::kernel_sctp_available() {
        bail!(
            "{}",
            e2lb::transport::Error::NoKernelSctp(std::io::Error::from_raw_os_error(
                libc::EPROTONOSUPPORT
            ))
        );
    }
    Ok(())
}

fn top(
    admin: String,
    token_env: Option<String>,
    interval: Duration,
    once: bool,
) -> anyhow::Result<ExitCode> {
    let token = match token_env {
        Some(var) => Some(
            std::env::var(&var)
                .with_context(|| format!("--token-env {var}: the variable is not set"))?,
        ),
        None => None,
    };
    runtime()?.block_on(async move {
        let mut out = std::io::stdout();
        e2lb::top::run(&admin, token.as_deref(), interval, once, &mut out).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run_proxy(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path.clone())?;
    init_tracing(&cfg.log.level);
    require_kernel_sctp()?;
    runtime()?.block_on(async move {
        let metrics = Arc::new(Metrics::new()?);
        let shared = Arc::new(Shared::with_balance(
            cfg.proxy(),
            Arc::new(Pool::with_latency(cfg.backends(), cfg.latency())),
            cfg.balance_settings()?,
            SctpConnector::new(cfg.transport()),
            metrics,
        )?);
        let stop = tokio_util::sync::CancellationToken::new();
        let balance_stop = stop.clone();
        // The prober can be replaced by a configuration reload.
        let (probers, probers_rx) = tokio::sync::watch::channel(cfg.prober()?);
        let balance_task = tokio::spawn(e2lb::balance::live::run_with(
            shared.balance.clone(),
            shared.pool.clone(),
            probers_rx,
            async move { balance_stop.cancelled().await },
        ));
        let executor = Arc::new(e2lb::migrate::Executor::new(
            cfg.executor(),
            shared.pool.clone(),
            shared.balance.clone(),
            shared.associations.clone(),
            &shared.metrics.registry,
        )?);
        let watch_task = tokio::spawn(executor.clone().watch(stop.clone()));
        let mut admin_state = AdminState::new(
            shared.metrics.clone(),
            shared.pool.clone(),
            shared.balance.clone(),
            shared.associations.clone(),
        )
        .with_default_metrics(cfg.probe.metrics_port, cfg.probe.metrics_path.clone())
        .with_migrate(executor.clone());
        let mut scale_task = None;
        let mut scale_control = None;
        if cfg.scale.enabled {
            let actuator = e2lb::scale::build_actuator(&cfg).await?;
            let control = Arc::new(
                e2lb::scale::control::ScaleControl::new(
                    cfg.scale_settings()?,
                    actuator,
                    &shared.metrics.registry,
                )?
                .with_migrate(
                    executor.clone(),
                    cfg.migrate.on_scale_in,
                    cfg.migrate.rebalance_on_scale_up,
                ),
            );
            admin_state = admin_state.with_scale(control.clone());
            scale_control = Some(control.clone());
            let leader = match cfg.leader()? {
                // A single replica always leads (the sender lives in the task).
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(true);
                    let s = stop.clone();
                    tokio::spawn(async move {
                        s.cancelled().await;
                        drop(tx);
                    });
                    rx
                }
                Some(lcfg) => {
                    let (tx, rx) = tokio::sync::watch::channel(e2lb::leader::Role::default());
                    let lm = e2lb::leader::LeaderMetrics::new(&shared.metrics.registry)?;
                    let s = stop.clone();
                    tokio::spawn(async move {
                        if let Err(e) =
                            e2lb::leader::run(lcfg, tx, lm, async move { s.cancelled().await })
                                .await
                        {
                            tracing::error!(error = %e, "leader election stopped");
                        }
                    });
                    e2lb::leader::leader_flag(rx)
                }
            };
            let s = stop.clone();
            scale_task = Some(tokio::spawn(e2lb::scale::control::run(
                control,
                shared.pool.clone(),
                shared.balance.clone(),
                shared.metrics.clone(),
                leader,
                async move { s.cancelled().await },
            )));
        }
        // SIGHUP and POST /api/v1/config/reload re-read the file.
        let reloader = {
            let proxy = shared.clone();
            Arc::new(e2lb::reload::Reloader::new(
                path,
                cfg.clone(),
                shared.pool.clone(),
                shared.balance.clone(),
                probers,
                Box::new(move |c| proxy.reconfigure(c)),
                executor.clone(),
                scale_control,
                &shared.metrics.registry,
            )?)
        };
        admin_state = admin_state.with_reload(reloader.clone());
        let hup_task = {
            let stop = stop.clone();
            let reloader = reloader.clone();
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = hup.recv() => {
                            tracing::info!("SIGHUP: reloading the configuration");
                            // The outcome is logged and counted by the reloader.
                            let _ = reloader.reload();
                        }
                    }
                }
            })
        };
        // The token (never logged) and TLS certificate; errors name the key.
        let admin_state =
            Arc::new(admin_state.with_security(admin::Security::from_config(&cfg.admin)?));
        let admin_listener = admin::bind(cfg.admin.listen).await.with_context(|| {
            format!(
                "binding the admin address {} ([admin] listen)",
                cfg.admin.listen
            )
        })?;
        let admin_stop = stop.clone();
        let admin_task = tokio::spawn(admin::serve(
            admin_listener,
            admin_state.clone(),
            async move { admin_stop.cancelled().await },
        ));
        let mut servers = Vec::new();
        for endpoint in &cfg.proxy.listen {
            let listener = SctpListener::bind(&endpoint.0, &cfg.transport())
                .with_context(|| format!("listening on {endpoint}"))?;
            let stop = stop.clone();
            servers.push(tokio::spawn(proxy::serve(
                listener,
                shared.clone(),
                async move { stop.cancelled().await },
            )));
        }
        admin_state.ready.store(true, Ordering::Relaxed);
        shutdown_signal().await;
        tracing::info!("signal received: draining");
        stop.cancel();
        for s in servers {
            let _ = s.await;
        }
        let _ = admin_task.await;
        let _ = balance_task.await;
        let _ = watch_task.await;
        let _ = hup_task.await;
        if let Some(t) = scale_task {
            let _ = t.await;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn write_report(path: Option<PathBuf>, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    match path {
        Some(p) => {
            std::fs::write(&p, text + "\n").with_context(|| format!("writing {}", p.display()))?
        }
        None => println!("{text}"),
    }
    Ok(())
}

fn demo(opts: DemoOptions, report: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    init_tracing("warn");
    if opts.transport == DemoTransport::Sctp && !sctp::kernel_sctp_available() {
        if std::env::var_os("E2LB_REQUIRE_SCTP").is_some() {
            bail!("no kernel SCTP even inside the rig: is the sctp module loaded?");
        }
        let args: Vec<String> = std::env::args().skip(1).collect();
        let code = e2lb::demo::reexec_in_rig(&args, opts.duration + Duration::from_secs(300))?;
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    let summary = runtime()?.block_on(async {
        let mut out = std::io::stdout();
        e2lb::demo::run(opts, &mut out).await
    })?;
    if let Some(p) = report {
        write_report(Some(p), &summary)?;
    }
    if summary.lost != 0 || summary.setups_ok < u64::from(summary.nodes) {
        eprintln!(
            "e2lb demo: FAILED (lost {}, nodes set up {}/{})",
            summary.lost, summary.setups_ok, summary.nodes
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn sim(cmd: SimCmd) -> anyhow::Result<ExitCode> {
    init_tracing("warn");
    require_kernel_sctp()?;
    let opts = e2lb::transport::Options::default();
    runtime()?.block_on(async move {
        match cmd {
            SimCmd::Node {
                target,
                nodes,
                first_node_id,
                ran_functions,
                class,
                profile,
                duration,
                drain,
                ppid,
                stream,
                report,
            } => {
                let cfg = e2lb::sim::NodeSimConfig {
                    target,
                    nodes,
                    first_node_id,
                    ran_functions,
                    class,
                    profile,
                    duration,
                    drain,
                    ppid,
                    stream,
                    ..Default::default()
                };
                let live = e2lb::sim::NodeLive::new();
                let progress = tokio::spawn(progress(live.clone(), |l| {
                    e2lb::sim::node::progress_line(l)
                }));
                let stop = live.clone();
                let mut run =
                    tokio::spawn(e2lb::sim::run_nodes(SctpConnector::new(opts), cfg, live));
                // The run ends by itself after duration + drain; a signal ends it early.
                let r = tokio::select! {
                    r = &mut run => r?,
                    _ = shutdown_signal() => {
                        stop.stop();
                        run.await?
                    }
                };
                progress.abort();
                eprintln!();
                write_report(report, &r)?;
            }
            SimCmd::Ric {
                listen,
                metrics,
                name,
                service_time,
                work_per_indication,
                control_period,
                no_subscribe,
                requestor_id,
                ids_per_association,
                duration,
                report,
            } => {
                let cfg = e2lb::sim::RicSimConfig {
                    name,
                    requestor_id,
                    ids_per_association,
                    service_time,
                    work_per_indication,
                    control_period,
                    subscribe: !no_subscribe,
                    ..Default::default()
                };
                let live = e2lb::sim::RicLive::with_cpu_figure(e2lb::sim::CpuFigure::Process);
                let listener = SctpListener::bind(&[listen], &opts)
                    .with_context(|| format!("listening on {listen}"))?;
                let stop = tokio_util::sync::CancellationToken::new();
                if let Some(addr) = metrics {
                    // Like a pod's metrics exporter, /metrics has a thread of
                    // its own: the simulated work (`--work-per-indication`)
                    // spins on the runtime's workers and must not starve the
                    // probes that are meant to see it.
                    let l = std::net::TcpListener::bind(addr)
                        .and_then(|l| l.set_nonblocking(true).map(|()| l))
                        .with_context(|| format!("metrics on {addr}"))?;
                    let (live, s) = (live.clone(), stop.clone());
                    std::thread::Builder::new()
                        .name("metrics".into())
                        .spawn(move || {
                            let rt = tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build();
                            match rt {
                                Ok(rt) => rt.block_on(async move {
                                    match tokio::net::TcpListener::from_std(l) {
                                        Ok(l) => {
                                            let _ = e2lb::sim::metrics::serve_metrics_on(
                                                l,
                                                live,
                                                async move { s.cancelled().await },
                                            )
                                            .await;
                                        }
                                        Err(e) => eprintln!("metrics listener: {e}"),
                                    }
                                }),
                                Err(e) => eprintln!("metrics runtime: {e}"),
                            }
                        })
                        .context("starting the metrics thread")?;
                }
                let progress = tokio::spawn(progress(live.clone(), e2lb::sim::ric::progress_line));
                let s = stop.clone();
                let run = tokio::spawn(e2lb::sim::run_ric(listener, cfg, live, async move {
                    s.cancelled().await
                }));
                match duration {
                    Some(d) => tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = shutdown_signal() => {}
                    },
                    None => shutdown_signal().await,
                }
                stop.cancel();
                let r = run.await?;
                progress.abort();
                eprintln!();
                write_report(report, &r)?;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A one-line progress display on stderr, redrawn every second.
async fn progress<T>(live: Arc<T>, line: fn(&T) -> String) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        eprint!("\r{}", line(&live));
    }
}

fn decode(file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let failed = std::cell::Cell::new(0usize);
    let print = |bytes: &[u8]| {
        let v = inspect::describe(bytes);
        if v.get("error").is_some() {
            failed.set(failed.get() + 1);
        }
        println!("{v}");
    };
    let print_error = |e: String| {
        failed.set(failed.get() + 1);
        println!("{}", serde_json::json!({ "error": e }));
    };
    match file {
        Some(p) => {
            let mut bytes = Vec::new();
            std::fs::File::open(&p)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .with_context(|| format!("reading {}", p.display()))?;
            print(&bytes);
        }
        None => {
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                let text = line.trim();
                if text.is_empty() || text.starts_with('#') {
                    continue;
                }
                match hex::decode(text) {
                    Ok(bytes) => print(&bytes),
                    Err(e) => print_error(format!("not hex: {e}")),
                }
            }
        }
    }
    Ok(if failed.get() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
