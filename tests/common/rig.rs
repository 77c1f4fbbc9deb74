//! Guard for tests that need kernel SCTP (shared by the rig test targets).
//!
//! On a host without kernel SCTP the tests skip themselves, unless
//! `E2LB_REQUIRE_SCTP=1` (set by `scripts/uml-run` inside the rig), where a
//! missing SCTP is a failure rather than a silent skip.

/// True when kernel SCTP is usable; false (after saying so) when the test should skip.
///
/// # Panics
/// When `E2LB_REQUIRE_SCTP=1` and the kernel has no SCTP.
pub fn sctp_or_skip() -> bool {
    if e2lb::transport::sctp::kernel_sctp_available() {
        return true;
    }
    if std::env::var("E2LB_REQUIRE_SCTP").is_ok_and(|v| v == "1") {
        panic!("E2LB_REQUIRE_SCTP=1 but this kernel has no SCTP (is the sctp module loaded?)");
    }
    println!("skipped: no kernel SCTP (run via scripts/rig-test)");
    false
}
