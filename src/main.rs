//! The `e2lb` command: the proxy, the simulators, the demo and operator tools.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use std::sync::atomic::{AtomicBool, Ordering};

use e2lb::admin::{self, AdminState};
use e2lb::balance::Pool;
use e2lb::config::Config;
use e2lb::e2ap::inspect;
use e2lb::proxy::{self, Metrics, Shared};
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
    /// Check a configuration file and print it as understood.
    CheckConfig { config: PathBuf },
    /// E2AP tools.
    E2ap {
        #[command(subcommand)]
        cmd: E2apCmd,
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run_proxy(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cfg = load_config(path)?;
    init_tracing(&cfg.log.level);
    if !sctp::kernel_sctp_available() {
        bail!(
            "{}",
            e2lb::transport::Error::NoKernelSctp(std::io::Error::from_raw_os_error(
                libc::EPROTONOSUPPORT
            ))
        );
    }
    runtime()?.block_on(async move {
        let metrics = Arc::new(Metrics::new()?);
        let shared = Arc::new(Shared {
            config: cfg.proxy(),
            pool: Pool::new(cfg.backends()),
            connector: SctpConnector::new(cfg.transport()),
            metrics,
        });
        let stop = tokio_util::sync::CancellationToken::new();
        let admin_state = Arc::new(AdminState {
            metrics: shared.metrics.clone(),
            ready: AtomicBool::new(false),
        });
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
        for addr in &cfg.proxy.listen {
            let listener = SctpListener::bind(&[*addr], &cfg.transport())
                .with_context(|| format!("listening on {addr}"))?;
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
