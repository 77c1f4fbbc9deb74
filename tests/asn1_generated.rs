//! Staleness checks for the checked-in E2AP codec:
//! - `src/e2ap/generated/mod.rs` must be what `scripts/gen-e2ap.sh` makes from
//!   `asn1/*.asn` with asn1-compiler 0.7.2 (`rs-asn1c`);
//! - `asn1/*.asn` must be what `asn1/tools/from_pycrate.py` makes from
//!   pycrate 0.8.1's compiled E2AP.
//!
//! Both tools are installed by the project's test script; a missing tool is a
//! failure with the install command, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("e2lb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}:\n  checked in: {x}\n  regenerated: {y}", i + 1);
        }
    }
    format!(
        "lengths differ: {} vs {} lines",
        a.lines().count(),
        b.lines().count()
    )
}

#[test]
fn generated_rust_is_up_to_date() {
    let out = scratch("gen");
    let status = Command::new("bash")
        .arg(root().join("scripts/gen-e2ap.sh"))
        .arg(&out)
        .status()
        .expect("run bash scripts/gen-e2ap.sh");
    assert!(
        status.code() != Some(2),
        "rs-asn1c (asn1-compiler 0.7.2) is missing: \
         cargo install asn1-compiler --version 0.7.2 --locked"
    );
    assert!(status.success(), "scripts/gen-e2ap.sh failed");
    let fresh = read(&out.join("mod.rs"));
    let checked_in = read(&root().join("src/e2ap/generated/mod.rs"));
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        fresh == checked_in,
        "src/e2ap/generated/mod.rs is stale: run scripts/gen-e2ap.sh\n{}",
        first_difference(&checked_in, &fresh)
    );
}

#[test]
fn asn1_modules_match_pycrate() {
    let probe = Command::new("python3")
        .args(["-c", "import pycrate_asn1dir.E2AP"])
        .output();
    assert!(
        matches!(&probe, Ok(o) if o.status.success()),
        "python3 with pycrate is required: pip install pycrate==0.8.1"
    );
    let out = scratch("asn1");
    let status = Command::new("python3")
        .arg(root().join("asn1/tools/from_pycrate.py"))
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run asn1/tools/from_pycrate.py");
    assert!(status.success(), "asn1/tools/from_pycrate.py failed");
    let mut n = 0;
    for entry in std::fs::read_dir(&out).expect("list output") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().expect("file name").to_owned();
        let fresh = read(&path);
        let checked_in = read(&root().join("asn1").join(&name));
        assert!(
            fresh == checked_in,
            "asn1/{} is stale: run python3 asn1/tools/from_pycrate.py\n{}",
            name.to_string_lossy(),
            first_difference(&checked_in, &fresh)
        );
        n += 1;
    }
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(n, 6, "expected the six E2AP modules");
}
