//! The fuzz targets' inputs, replayed in plain `cargo test` through the very
//! code the targets run (`fuzz/harness/*.rs`, included here with `#[path]`):
//!
//! - `fuzz/regressions/<target>/*`: inputs that crashed a target once (kept
//!   after the fix, so the crash cannot come back unnoticed);
//! - `fuzz/corpus/<target>/*`: the committed seed corpus.
//!
//! The seed corpus is generated (`fuzz/harness/seeds.rs`): a test fails when a
//! generated seed is missing from the committed corpus or differs from it.
//! `E2LB_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_regressions` rewrites it.

#[path = "../fuzz/harness/full_decode.rs"]
mod full_decode;
#[path = "../fuzz/harness/peek.rs"]
mod peek;
#[path = "../fuzz/harness/seeds.rs"]
mod seeds;
#[path = "../fuzz/harness/session.rs"]
mod session;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// `codec::panics_caught` is process-wide: one replay at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
}

/// The files of a directory, sorted (none if it does not exist; dot files skipped).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// Run every committed input of `target`; returns (corpus, regressions) counts.
fn replay(target: &str, run: fn(&[u8])) -> (usize, usize) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut counts = [0; 2];
    for (i, kind) in ["corpus", "regressions"].into_iter().enumerate() {
        for path in files(&dir(kind, target)) {
            let data = std::fs::read(&path).unwrap();
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                let ops = match target {
                    "session" => format!("\n{:#?}", session::parse(&data)),
                    _ => String::new(),
                };
                panic!(
                    "{target}: {} fails (reproduce: cargo fuzz run -s none {target} {}){ops}",
                    path.display(),
                    path.display()
                );
            }
            counts[i] += 1;
        }
    }
    (counts[0], counts[1])
}

#[test]
fn peek_inputs_pass() {
    let (corpus, _) = replay("peek", peek::run);
    assert!(corpus >= 100, "the peek seed corpus has {corpus} inputs");
}

#[test]
fn full_decode_inputs_pass() {
    let (corpus, _) = replay("full_decode", full_decode::run);
    assert!(
        corpus >= 100,
        "the full_decode seed corpus has {corpus} inputs"
    );
}

#[test]
fn session_inputs_pass() {
    let (corpus, _) = replay("session", session::run);
    assert!(corpus >= 15, "the session seed corpus has {corpus} inputs");
}

/// The session seeds reach what they are named after (so they are not
/// noise: a change to the harness's operations that breaks them shows here).
#[test]
fn session_seeds_reach_their_states() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let outcomes: Vec<(&str, session::Outcome)> = seeds::session_seeds()
        .into_iter()
        .map(|(name, config, ops)| (name, session::execute(&config, &ops)))
        .collect();
    let get = |name: &str| {
        outcomes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| panic!("no seed {name}"))
    };
    let o = get("subscribe-indicate-control-delete");
    assert_eq!((o.setups_complete, o.subscriptions), (1, 2), "{o:?}");
    assert_eq!(o.stats.indications, 8, "{o:?}");
    assert!(o.closed_by_input, "{o:?}");
    for name in ["planned-migration", "planned-migration-release"] {
        let o = get(name);
        assert_eq!((o.stats.migrations, o.adopted), (1, 2), "{name}: {o:?}");
    }
    assert_eq!(get("planned-migration-release").released, 1);
    let o = get("backend-lost-rehome");
    assert_eq!(o.stats.migrations, 1, "{o:?}");
    assert!(
        o.stats.held > 0 && o.adopted == 1 && o.dropped == 1,
        "{o:?}"
    );
    assert!(get("backend-lost-no-target").closed_by_input);
    assert!(get("backend-lost-no-rehome").closed_by_input);
    assert!(get("migration-aborted").aborted >= 3);
    assert_eq!(get("handover-timeout-drops").dropped, 1);
    assert_eq!(get("setup-timeout-retry").setups_complete, 1);
    assert_eq!(get("setup-rejected-retried").setups_complete, 1);
    assert_eq!(get("no-backend-paced").setups_complete, 1);
    for name in ["first-not-setup", "malformed-first", "mutated-setup"] {
        let o = get(name);
        assert!(
            o.closed_by_input && o.stats.protocol_errors == 1,
            "{name}: {o:?}"
        );
    }
    assert!(get("protocol-errors").stats.protocol_errors >= 4);
}

/// The committed seed corpus holds every generated seed, and
/// `fuzz/regressions/session/` every session regression, byte for byte.
#[test]
fn seed_corpus_is_the_generated_one() {
    let write = std::env::var_os("E2LB_WRITE_FUZZ_SEEDS").is_some();
    let mut stale = Vec::new();
    let generated = ["peek", "full_decode", "session"]
        .map(|t| (dir("corpus", t), seeds::seeds(t)))
        .into_iter()
        .chain([(dir("regressions", "session"), seeds::session_regressions())]);
    for (dir, files) in generated {
        for (name, bytes) in files {
            let path = dir.join(&name);
            if std::fs::read(&path).ok().as_deref() == Some(&bytes[..]) {
                continue;
            }
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "seed corpus out of date (E2LB_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_regressions): {stale:?}"
    );
}
