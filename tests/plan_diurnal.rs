//! A day of hourly planning on the CORMO-RAN load model
//! (`e2lb::migrate::plan::diurnal`). With `E2LB_WRITE_DOCS=1` it also writes
//! `docs/migrate/results.md` and `docs/migrate/diurnal.svg`.

use e2lb::migrate::plan::diurnal::{simulate, DiurnalConfig};

#[test]
fn a_day_saves_energy_within_the_ceiling() {
    let cfg = DiurnalConfig::default();
    let day = simulate(&cfg);
    for h in &day.hours {
        eprintln!(
            "{:02}:00 units {:4} active {} on {} off {} moves {:3} peak {:.3} energy {:7.1} W baseline {:7.1} W",
            h.hour, h.units, h.active, h.switched_on, h.switched_off, h.moves, h.peak_cpu, h.energy_w, h.baseline_w
        );
    }
    eprintln!(
        "day: saving {:.1} % (best hour {:.1} %), {} moves, peak CPU {:.3}",
        100.0 * day.saving,
        100.0 * day.max_hour_saving,
        day.moves,
        day.peak_cpu
    );
    assert!(day.all_feasible);
    assert_eq!(day.hours.len(), 24);
    assert!(day.peak_cpu <= cfg.planner.cpu_ceiling + 1e-9);
    // Saves, but not more than the idle power of all but one backend allows.
    assert!(day.saving > 0.05, "saving {}", day.saving);
    let idle_share = day
        .hours
        .iter()
        .map(|h| (cfg.backends as f64 - 1.0) * cfg.planner.idle_power_w / h.baseline_w)
        .fold(0.0, f64::max);
    assert!(day.max_hour_saving <= idle_share + 1e-9);
    // Fewer backends at night than at the evening peak; never below one.
    let night = day.hours[4].active;
    let peak = day.hours[19].active;
    assert!(night < peak, "night {night} peak {peak}");
    assert!(day
        .hours
        .iter()
        .all(|h| h.active >= 1 && h.active <= cfg.backends));
    // Energy never above the all-on baseline by more than the moves cost.
    for h in &day.hours {
        assert!(h.energy_w <= h.baseline_w + h.moves as f64 * cfg.planner.move_cost_w + 1e-9);
    }
    // Deterministic.
    assert_eq!(simulate(&cfg), day);

    if std::env::var("E2LB_WRITE_DOCS").as_deref() == Ok("1") {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/migrate");
        std::fs::create_dir_all(&dir).expect("create docs/migrate");
        std::fs::write(dir.join("results.md"), day.markdown()).expect("write results.md");
        std::fs::write(dir.join("diurnal.svg"), day.svg()).expect("write diurnal.svg");
    }
}
