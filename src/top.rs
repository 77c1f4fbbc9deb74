//! `e2lb top --admin URL`: a live terminal view of a running e2lb, read from
//! its admin API every second — per-backend bars of C, CPU, in-flight and
//! associations, the Bull-and-Bear state, the scaler's last decisions and the
//! last migrations. Plain ANSI (no terminal UI dependency).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use hyper::Uri;
use serde_json::Value;

use crate::probe::http::get_with_token;

/// Largest admin API answer read.
const MAX_BODY: usize = 4 << 20;

/// What one refresh read from the admin API.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub backends: Value,
    pub balancer: Value,
    /// `None` when the scaler is off (404) or unreachable.
    pub scaler: Option<Value>,
    /// `None` when migration is not available.
    pub migrations: Option<Value>,
}

/// Read everything `render` shows from the admin API at `base` (e.g.
/// `http://127.0.0.1:9090`).
pub async fn fetch(base: &str, token: Option<&str>, timeout: Duration) -> anyhow::Result<View> {
    let base = base.trim_end_matches('/');
    let get = |path: &'static str| async move {
        let url: Uri = format!("{base}{path}")
            .parse()
            .with_context(|| format!("{base}{path} is not a URL"))?;
        let text = get_with_token(&url, timeout, MAX_BODY, token)
            .await
            .with_context(|| format!("GET {url}"))?;
        serde_json::from_str::<Value>(&text).with_context(|| format!("GET {url}: not JSON"))
    };
    Ok(View {
        backends: get("/api/v1/backends").await?,
        balancer: get("/api/v1/balancer").await?,
        scaler: get("/api/v1/scaler").await.ok(),
        migrations: get("/api/v1/migrations").await.ok(),
    })
}

/// `width` cells of a bar filled to `frac` (0..1).
fn bar(frac: f64, width: usize) -> String {
    let frac = if frac.is_finite() {
        frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let full = (frac * width as f64).round() as usize;
    format!("{}{}", "█".repeat(full), "·".repeat(width - full))
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// The screen for one refresh (pure: tested on recorded answers).
pub fn render(v: &View, source: &str) -> String {
    let mut s = String::new();
    let b = &v.balancer;
    let mode = text(&b["mode"]);
    let _ = writeln!(
        s,
        "e2lb top — {source}   balancer {}{}   pool mean C {:.2} max C {:.2}   open {}",
        mode.to_uppercase(),
        num(&b["bear_for_s"])
            .filter(|_| mode == "bear")
            .map_or(String::new(), |t| format!(" for {t:.0} s")),
        num(&b["pool"]["mean_c"]).unwrap_or(f64::NAN),
        num(&b["pool"]["max_c"]).unwrap_or(f64::NAN),
        b["pool"]["open"],
    );
    let _ = writeln!(
        s,
        "\n{:<14} {:<10} {:>6} {:>9}  {:<22} {:<28} {:>9}",
        "backend", "status", "assocs", "in-flight", "C", "CPU", "lat ms"
    );
    let backends = v.backends["backends"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let max_assocs = backends
        .iter()
        .filter_map(|x| x["associations"].as_u64())
        .max()
        .unwrap_or(0);
    for x in &backends {
        let c = num(&x["score"]["c"]).unwrap_or(0.0);
        let cpu = match (num(&x["score"]["cpu"]), text(&x["score"]["cpu_source"])) {
            (Some(cpu), "probed") => format!("{} {:>3.0}%", bar(cpu, 20), cpu * 100.0),
            _ => format!("{} stale", bar(0.0, 20)),
        };
        let assocs = x["associations"].as_u64().unwrap_or(0);
        let _ = writeln!(
            s,
            "{:<14} {:<10} {:>6} {:>9}  {} {:.2} {:<28} {:>9}",
            text(&x["name"]),
            text(&x["status"]),
            assocs,
            x["in_flight"].as_u64().unwrap_or(0),
            bar(c, 16),
            c,
            cpu,
            num(&x["latency"]["ewma_ms"]).map_or("-".into(), |l| format!("{l:.1}")),
        );
        if max_assocs > 0 {
            let _ = writeln!(
                s,
                "{:<14} {:<10} {}",
                "",
                "",
                bar(assocs as f64 / max_assocs as f64, 40)
            );
        }
    }
    match &v.scaler {
        Some(sc) => {
            let _ = writeln!(
                s,
                "\nscaler ({}, {}): desired {} actual {} pending {}",
                text(&sc["actuator"]),
                if sc["leader"].as_bool().unwrap_or(false) {
                    "leader"
                } else {
                    "follower"
                },
                sc["desired"],
                sc["actual"],
                sc["pending"]
            );
            let decisions = sc["decisions"].as_array().cloned().unwrap_or_default();
            for d in decisions
                .iter()
                .filter(|d| text(&d["decision"]["action"]["kind"]) != "none")
                .rev()
                .take(4)
            {
                let _ = writeln!(
                    s,
                    "  {}  {} ({}): {} -> {}  {}",
                    text(&d["at"]),
                    text(&d["decision"]["action"]["kind"]),
                    text(&d["decision"]["rule"]),
                    d["decision"]["current"],
                    d["decision"]["desired"],
                    text(&d["outcome"])
                );
            }
        }
        None => {
            let _ = writeln!(s, "\nscaler off");
        }
    }
    if let Some(m) = &v.migrations {
        let moves = m["moves"].as_array().cloned().unwrap_or_default();
        let switched = moves.iter().filter(|x| x["outcome"] == "switched").count();
        let _ = writeln!(
            s,
            "\nmigrations: {} recorded, {} switched",
            moves.len(),
            switched
        );
        for x in moves.iter().rev().take(5) {
            let what = match text(&x["outcome"]) {
                "switched" => format!(
                    "{} -> {} in {:.0} ms, {} subscriptions handed over",
                    text(&x["from"]),
                    text(&x["to"]),
                    num(&x["took_ms"]).unwrap_or(0.0),
                    x["adopted"]
                ),
                other => format!("{other}: {}", text(&x["reason"])),
            };
            let _ = writeln!(
                s,
                "  association {} ({}): {what}",
                x["association"],
                text(&x["node"])
            );
        }
    }
    s
}

/// Refresh every `interval` until interrupted (or once).
pub async fn run(
    base: &str,
    token: Option<&str>,
    interval: Duration,
    once: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let tty = std::io::stdout().is_terminal() && !once;
    loop {
        let screen = match fetch(base, token, Duration::from_secs(2)).await {
            Ok(v) => render(&v, base),
            Err(e) if once => return Err(e),
            Err(e) => format!("e2lb top — {base}: {e:#}\n"),
        };
        if tty {
            // Home, clear, draw.
            write!(out, "\x1b[H\x1b[2J{screen}")?;
        } else {
            write!(out, "{screen}")?;
        }
        out.flush()?;
        if once {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_backends_scaler_and_moves() {
        let v = View {
            backends: json!({"backends": [
                {"name": "ric-0", "status": "open", "associations": 10, "in_flight": 2,
                 "latency": {"ewma_ms": 3.25}, "score": {"c": 0.5, "cpu": 0.75, "cpu_source": "probed"}},
                {"name": "ric-1", "status": "draining", "associations": 5, "in_flight": 0,
                 "latency": {"ewma_ms": null}, "score": {"c": 0.1, "cpu": 0.0, "cpu_source": "associations"}}
            ]}),
            balancer: json!({"mode": "bear", "bear_for_s": 12.0, "pool": {"mean_c": 0.3, "max_c": 0.5, "open": 1}}),
            scaler: Some(
                json!({"actuator": "exec", "leader": true, "desired": 3, "actual": 2, "pending": 1,
                "decisions": [{"at": "2026-11-22T10:00:00Z", "outcome": "applied",
                    "decision": {"rule": "cpu_high", "current": 2, "desired": 3, "action": {"kind": "scale_up"}}}]}),
            ),
            migrations: Some(
                json!({"moves": [{"association": 7, "node": "abcd", "outcome": "switched",
                "from": "ric-1", "to": "ric-0", "took_ms": 4.0, "adopted": 2}]}),
            ),
        };
        let s = render(&v, "http://x");
        assert!(s.contains("balancer BEAR for 12 s"), "{s}");
        assert!(s.contains("ric-0") && s.contains(" 75%"), "{s}");
        assert!(s.contains("draining") && s.contains("stale"), "{s}");
        assert!(s.contains("████████········ 0.50"), "{s}");
        assert!(s.contains("desired 3 actual 2 pending 1"), "{s}");
        assert!(s.contains("scale_up (cpu_high): 2 -> 3  applied"), "{s}");
        assert!(
            s.contains("association 7 (abcd): ric-1 -> ric-0 in 4 ms, 2 subscriptions"),
            "{s}"
        );
        let off = render(
            &View {
                scaler: None,
                migrations: None,
                ..v
            },
            "http://x",
        );
        assert!(off.contains("scaler off"), "{off}");
    }

    #[test]
    fn bars_are_bounded() {
        assert_eq!(bar(2.0, 4), "████");
        assert_eq!(bar(-1.0, 4), "····");
        assert_eq!(bar(f64::NAN, 2), "··");
        assert_eq!(bar(0.5, 4), "██··");
    }
}
