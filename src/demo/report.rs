//! The demo's report: a markdown file telling the run's story with its
//! figures, and PNG plots of CPU per backend, associations per backend and
//! replicas over time (`target/demo/` by default).
//!
//! The plots carry no text (the PNG backend would need system fonts); the
//! markdown gives each one its title, axes and colour key.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::DemoSummary;

/// One second of the run, as the live table saw it.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub t_s: f64,
    /// Backends in the pool.
    pub replicas: usize,
    pub bear: bool,
    /// Per backend (in order of first appearance): fresh probed CPU (0..1)
    /// and associations.
    pub backends: Vec<BackendPoint>,
}

/// What happened when (scaler decisions, migrations, load changes).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub samples: Vec<Sample>,
    pub events: Vec<(f64, String)>,
}

impl Timeline {
    pub fn event(&mut self, t_s: f64, what: impl Into<String>) {
        self.events.push((t_s, what.into()));
    }

    /// Every backend seen, in order of first appearance.
    fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.samples {
            for (n, _, _) in &s.backends {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }
}

const W: u32 = 900;
const H: u32 = 300;
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];
const COLOUR_NAMES: [&str; 8] = [
    "blue", "orange", "green", "red", "purple", "brown", "pink", "grey",
];

type Series = Vec<(f64, f64)>;
/// One backend in a [`Sample`]: name, CPU, associations.
type BackendPoint = (String, Option<f64>, i64);

/// A line chart of `series` over `0..t_max` × `0..y_max`, with grid lines
/// every `grid` and an optional dashed reference line.
fn chart(
    path: &Path,
    t_max: f64,
    y_max: f64,
    grid: f64,
    reference: Option<f64>,
    series: &[(RGBColor, Series)],
) -> Result<(), String> {
    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut c = ChartBuilder::on(&root)
        .margin(12)
        .build_cartesian_2d(0f64..t_max.max(1.0), 0f64..y_max)
        .map_err(|e| e.to_string())?;
    let light = RGBColor(225, 225, 225);
    let mut y = grid;
    while y < y_max {
        c.draw_series(LineSeries::new([(0.0, y), (t_max, y)], light))
            .map_err(|e| e.to_string())?;
        y += grid;
    }
    let mut t = 10.0;
    while t < t_max {
        c.draw_series(LineSeries::new([(t, 0.0), (t, y_max)], light))
            .map_err(|e| e.to_string())?;
        t += 10.0;
    }
    c.draw_series(LineSeries::new([(0.0, 0.0), (t_max, 0.0)], BLACK))
        .map_err(|e| e.to_string())?;
    c.draw_series(LineSeries::new([(0.0, 0.0), (0.0, y_max)], BLACK))
        .map_err(|e| e.to_string())?;
    if let Some(r) = reference {
        let dashes = (0..(t_max as usize).max(1))
            .step_by(2)
            .map(|i| PathElement::new(vec![(i as f64, r), (i as f64 + 1.0, r)], RED));
        c.draw_series(dashes).map_err(|e| e.to_string())?;
    }
    for (colour, points) in series {
        c.draw_series(LineSeries::new(
            points.iter().copied(),
            colour.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Write `report.md`, `cpu.png`, `associations.png` and `replicas.png` into `dir`.
pub fn write(dir: &Path, summary: &DemoSummary, tl: &Timeline) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let names = tl.names();
    let t_max = tl.samples.last().map_or(1.0, |s| s.t_s).ceil().max(1.0);
    let colour = |i: usize| PALETTE[i % PALETTE.len()];
    let per_backend = |f: &dyn Fn(&BackendPoint) -> Option<f64>| {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let pts: Series = tl
                    .samples
                    .iter()
                    .filter_map(|s| {
                        s.backends
                            .iter()
                            .find(|b| &b.0 == n)
                            .and_then(f)
                            .map(|v| (s.t_s, v))
                    })
                    .collect();
                (colour(i), pts)
            })
            .collect::<Vec<_>>()
    };
    let cpu = per_backend(&|b| b.1);
    let assocs = per_backend(&|b| Some(b.2 as f64));
    let max_assocs = tl
        .samples
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| b.2))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let replicas: Series = tl
        .samples
        .iter()
        .map(|s| (s.t_s, s.replicas as f64))
        .collect();
    let bear: Series = tl
        .samples
        .iter()
        .map(|s| (s.t_s, if s.bear { 0.5 } else { 0.0 }))
        .collect();
    let max_replicas = tl.samples.iter().map(|s| s.replicas).max().unwrap_or(1) as f64;
    let files = [
        dir.join("cpu.png"),
        dir.join("associations.png"),
        dir.join("replicas.png"),
    ];
    chart(&files[0], t_max, 1.0, 0.2, Some(0.8), &cpu)?;
    chart(
        &files[1],
        t_max,
        (max_assocs * 1.1).ceil(),
        5.0,
        None,
        &assocs,
    )?;
    chart(
        &files[2],
        t_max,
        max_replicas + 1.0,
        1.0,
        None,
        &[(PALETTE[0], replicas), (PALETTE[3], bear)],
    )?;

    let mut md = String::new();
    let _ = writeln!(md, "# e2lb demo report\n");
    let _ = writeln!(
        md,
        "{} E2 nodes over {}, {} RIC simulators at the end. Load rises, the \
         balancer enters Bear and the scaler adds a RIC; new nodes go to it; \
         the load falls, the scaler removes a RIC and its associations are \
         migrated live to the others.\n",
        summary.nodes,
        summary.transport,
        summary.backends.len()
    );
    let _ = writeln!(md, "| figure | value |\n|---|---|");
    for (k, v) in [
        (
            "E2 nodes set up (once each)",
            format!("{} / {}", summary.setups_ok, summary.nodes),
        ),
        ("node association restarts", summary.reconnects.to_string()),
        ("indications sent by the nodes", summary.sent.to_string()),
        (
            "indications received by the RICs",
            summary.received.to_string(),
        ),
        ("lost", summary.lost.to_string()),
        (
            "gaps / duplicates / reordered",
            format!(
                "{} / {} / {}",
                summary.gaps, summary.duplicates, summary.out_of_order
            ),
        ),
        (
            "backends added by the scaler",
            format!("{:?}", summary.scaled_up),
        ),
        (
            "second-wave nodes placed on an added backend",
            format!("{} / {}", summary.second_wave_on_added, summary.second_wave),
        ),
        (
            "backends removed by the scaler",
            format!("{:?}", summary.scaled_down),
        ),
        (
            "associations migrated live (failed)",
            format!("{} ({})", summary.migrated, summary.migrations_failed),
        ),
        (
            "end-to-end latency p50 / p99 (worst backend)",
            format!(
                "{:.0} µs / {:.0} µs",
                summary.e2e_p50_us, summary.e2e_p99_us
            ),
        ),
    ] {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(
        md,
        "\n| backend | associations | indications received |\n|---|---|---|"
    );
    for b in &summary.backends {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            b.name, b.associations, b.indications
        );
    }
    let key: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n} {}", COLOUR_NAMES[i % COLOUR_NAMES.len()]))
        .collect();
    let _ = writeln!(
        md,
        "\n## CPU per backend\n\n![CPU per backend](cpu.png)\n\nProbed CPU (0 to 1, grid \
         every 0.2; dashed red: the 80 % scale-up threshold) over time (grid every \
         10 s). Colours: {}.\n",
        key.join(", ")
    );
    let _ = writeln!(
        md,
        "## Associations per backend\n\n![Associations per backend](associations.png)\n\n\
         E2 associations homed on each backend (grid every 5). Colours as above.\n"
    );
    let _ = writeln!(
        md,
        "## Replicas\n\n![Replicas](replicas.png)\n\nBackends in the pool (blue, grid \
         every 1) and the balancer's mode (red: 0.5 while in Bear).\n"
    );
    let _ = writeln!(md, "## Timeline\n\n| t (s) | event |\n|---|---|");
    for (t, e) in &tl.events {
        let _ = writeln!(md, "| {t:.1} | {e} |");
    }
    let path = dir.join("report.md");
    std::fs::write(&path, md).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let mut out = vec![path];
    out.extend(files);
    Ok(out)
}
