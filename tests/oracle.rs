//! Oracle tests of the E2AP peek and full codec against pycrate 0.8.1.
//!
//! - `checked_in_corpus`: `tests/corpus/pycrate.jsonl` (one PDU per message
//!   type, one 20 kB indication, the FlexRIC captures) with pycrate's decoded
//!   keys: runs without Python.
//! - `pycrate_corpus`: generates a fresh seeded corpus (>= 200 PDUs, every
//!   procedure and message type, random IE values, PDUs of 16 KiB and more)
//!   with `tests/oracle/pycrate_oracle.py` and checks the peek, the full codec
//!   and the `e2lb e2ap decode` CLI against pycrate's decode.
//! - `builders_decode_in_pycrate`: every builder's output decoded by pycrate
//!   holds the values it was built from.
//!
//! Per PDU: (1) the peek's keys equal pycrate's; (2) when the full codec
//! decodes it, re-encoding is byte-identical; PDUs that use no extension
//! addition and are under 16 KiB must decode; larger ones must be refused as
//! fragmented. The tests needing pycrate fail (never skip) when it is missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use e2lb::e2ap::build::{self, ActionType, Cause, ComponentId, GlobalRicId, GnbId};
use e2lb::e2ap::codec::{self, CodecError};
use e2lb::e2ap::peek::Envelope;
use e2lb::e2ap::RicRequestId;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Entry {
    label: String,
    source: String,
    bytes: Vec<u8>,
    uses_ext: bool,
    /// A variable-size BIT STRING / PrintableString of <= 16 bits, which
    /// asn1-codecs 0.7.2 fails to octet-align (see tests/oracle/README.md).
    short_var_string: bool,
    pycrate: Value,
}

impl Entry {
    /// Why the generated codec may legitimately fail on this PDU.
    fn known_limit(&self) -> Option<&'static str> {
        if self.uses_ext {
            Some("extension addition")
        } else if self.short_var_string {
            Some("short variable-size string not octet-aligned by asn1-codecs")
        } else {
            None
        }
    }
}

fn load(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("corpus line is JSON");
            Entry {
                label: v["label"].as_str().expect("label").to_owned(),
                source: v["source"].as_str().expect("source").to_owned(),
                bytes: hex::decode(v["hex"].as_str().expect("hex")).expect("hex PDU"),
                uses_ext: v["uses_ext"].as_bool().expect("uses_ext"),
                short_var_string: v["short_var_string"].as_bool().expect("short_var_string"),
                pycrate: v["pycrate"].clone(),
            }
        })
        .collect()
}

/// The routing keys as the peek reads them, in the corpus' JSON shape.
fn peek_keys(bytes: &[u8]) -> Result<Value, String> {
    let env = Envelope::parse(bytes).map_err(|e| e.to_string())?;
    Ok(json!({
        "kind": env.kind().name(),
        "procedure_code": env.procedure_code(),
        "criticality": env.criticality().name(),
        "ie_ids": env.ies().map(|ie| ie.id).collect::<Vec<u16>>(),
        "transaction_id": env.transaction_id(),
        "ric_request_id": env.ric_request_id(),
        "ran_function_id": env.ran_function_id(),
        "global_e2node_id": env.global_e2node_id_raw().map(hex::encode),
        "global_ric_id": env.global_ric_id_raw().map(hex::encode),
    }))
}

#[derive(Default, Debug)]
struct Report {
    total: usize,
    round_trip: usize,
    fragmented: usize,
    /// (label, reason) of PDUs the full codec does not round-trip (extensions).
    not_full: Vec<(String, String)>,
    failures: Vec<String>,
}

impl Report {
    fn print(&self, what: &str) {
        println!(
            "{what}: {} PDUs; full codec round-trips {}, refuses {} as fragmented (>= 16 KiB), \
             {} not round-tripped (known limits of the generated codec)",
            self.total,
            self.round_trip,
            self.fragmented,
            self.not_full.len()
        );
        for (label, why) in &self.not_full {
            println!("  not round-tripped: {label}: {why}");
        }
    }
}

fn check_entry(e: &Entry, r: &mut Report) {
    r.total += 1;
    // (1) the peek agrees with pycrate
    match peek_keys(&e.bytes) {
        Ok(keys) if keys == e.pycrate => {}
        Ok(keys) => r
            .failures
            .push(format!("{}: peek {keys} != pycrate {}", e.label, e.pycrate)),
        Err(err) => r.failures.push(format!("{}: peek failed: {err}", e.label)),
    }
    // (2) the full codec: byte-identical round trip, or a known limit
    match codec::decode(&e.bytes) {
        Ok(pdu) => match codec::encode(&pdu) {
            Ok(out) if out == e.bytes => r.round_trip += 1,
            Ok(_) if e.known_limit().is_some() => r.not_full.push((
                e.label.clone(),
                format!(
                    "re-encode differs ({})",
                    e.known_limit().unwrap_or_default()
                ),
            )),
            Ok(_) => r.failures.push(format!("{}: re-encode differs", e.label)),
            Err(err) => r
                .failures
                .push(format!("{}: re-encode failed: {err}", e.label)),
        },
        Err(CodecError::Fragmented) if e.bytes.len() >= 16 * 1024 => r.fragmented += 1,
        Err(err) if e.known_limit().is_some() => r.not_full.push((
            e.label.clone(),
            format!("{} ({err})", e.known_limit().unwrap_or_default()),
        )),
        Err(err) => r.failures.push(format!(
            "{} ({} bytes, {}): full decode failed: {err}",
            e.label,
            e.bytes.len(),
            e.source
        )),
    }
}

fn assert_clean(r: &Report) {
    assert!(
        r.failures.is_empty(),
        "{} failures:\n{}",
        r.failures.len(),
        r.failures.join("\n")
    );
}

#[test]
fn checked_in_corpus() {
    let entries = load(&root().join("tests/corpus/pycrate.jsonl"));
    let mut r = Report::default();
    for e in &entries {
        check_entry(e, &mut r);
    }
    r.print("checked-in corpus");
    assert_clean(&r);
    assert!(entries.iter().any(|e| e.source == "flexric"));
    assert!(entries.iter().any(|e| e.bytes.len() >= 16 * 1024));
}

fn require_pycrate() {
    let probe = Command::new("python3")
        .args(["-c", "import pycrate_asn1dir.E2AP"])
        .output();
    assert!(
        matches!(&probe, Ok(o) if o.status.success()),
        "python3 with pycrate is required for the oracle tests: pip install pycrate==0.8.1"
    );
}

fn oracle() -> PathBuf {
    root().join("tests/oracle/pycrate_oracle.py")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("e2lb-oracle-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Feed hex lines to a command, collect its stdout lines.
fn pipe(cmd: &mut Command, input: &str) -> (bool, Vec<String>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer thread").expect("write stdin");
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    (
        out.status.success(),
        text.lines().map(str::to_owned).collect(),
    )
}

#[test]
fn pycrate_corpus() {
    require_pycrate();
    let dir = scratch("corpus");
    let path = dir.join("corpus.jsonl");
    let mut cmd = Command::new("python3");
    cmd.arg(oracle())
        .args(["corpus", "--seed", "20240601", "--per-type", "5"]);
    for v in ["flexric-e2ap-v2.tsv", "flexric-e2ap-v3.tsv"] {
        let p = root().join("../shared/vectors").join(v);
        if p.exists() {
            cmd.arg("--vectors").arg(p);
        }
    }
    let status = cmd
        .arg(&path)
        .status()
        .expect("run pycrate_oracle.py corpus");
    assert!(status.success(), "corpus generation failed");
    let entries = load(&path);
    assert!(entries.len() >= 200, "corpus too small: {}", entries.len());

    // every procedure code 1..=17 and every message type it has
    let mut seen = std::collections::BTreeSet::new();
    for e in entries.iter().filter(|e| e.source == "generated") {
        seen.insert((
            e.pycrate["procedure_code"].as_u64().expect("code"),
            e.pycrate["kind"].as_str().expect("kind").to_owned(),
        ));
    }
    let codes: std::collections::BTreeSet<u64> = seen.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, (1..=17).collect(), "procedure codes covered");
    assert_eq!(seen.len(), 42, "message types covered: {seen:?}");

    let mut r = Report::default();
    for e in &entries {
        check_entry(e, &mut r);
    }
    r.print("pycrate corpus");
    assert_clean(&r);
    assert!(r.fragmented >= 3, "large PDUs missing from the corpus");

    // the CLI reports the same keys, one JSON object per input line
    let input: String = entries
        .iter()
        .map(|e| hex::encode(&e.bytes) + "\n")
        .collect();
    let (ok, lines) = pipe(
        Command::new(env!("CARGO_BIN_EXE_e2lb")).args(["e2ap", "decode"]),
        &input,
    );
    assert_eq!(lines.len(), entries.len(), "one output line per PDU");
    let mut cli_failures = Vec::new();
    for (e, line) in entries.iter().zip(&lines) {
        let v: Value = serde_json::from_str(line).expect("CLI prints JSON");
        for key in [
            "kind",
            "procedure_code",
            "criticality",
            "ie_ids",
            "transaction_id",
            "ric_request_id",
            "ran_function_id",
            "global_e2node_id",
            "global_ric_id",
        ] {
            if v[key] != e.pycrate[key] {
                cli_failures.push(format!(
                    "{}: CLI {key} = {} but pycrate says {}",
                    e.label, v[key], e.pycrate[key]
                ));
            }
        }
        if v["full"].is_null() == codec::decode(&e.bytes).is_ok() {
            cli_failures.push(format!(
                "{}: CLI full decode disagrees with the codec",
                e.label
            ));
        }
    }
    assert!(ok, "e2lb e2ap decode exited non-zero on a readable corpus");
    assert!(cli_failures.is_empty(), "{}", cli_failures.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- builders

const REQ: RicRequestId = RicRequestId {
    requestor: 0xbeef,
    instance: 65535,
};

/// (label, bytes, [(JSON pointer into pycrate's JER, expected value)]).
type Case = (&'static str, Vec<u8>, Vec<(String, Value)>);

fn ie(kind: &str, n: usize, rest: &str) -> String {
    format!("/{kind}/value/protocolIEs/{n}{rest}")
}

fn builder_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let funcs = [
        build::RanFunction {
            id: 2,
            definition: b"\xde\xad",
            revision: 3,
            oid: "1.3.6.1.4.1.53148.1.2.2.2",
        },
        build::RanFunction {
            id: 4095,
            definition: b"",
            revision: 0,
            oid: "OID (test)",
        },
    ];
    let comps = [build::NodeComponent {
        id: ComponentId::Ng { amf_name: "amf1" },
        request_part: b"\x01",
        response_part: b"\x02",
    }];
    for bits in [22u8, 27, 32] {
        let gnb_id = if bits == 32 {
            0x8000_0001
        } else {
            1 << (bits - 1) | 1
        };
        let b = build::E2SetupRequest {
            transaction_id: 17,
            node: GnbId {
                plmn: [0x13, 0xf1, 0x84],
                gnb_id,
                gnb_id_bits: bits,
            },
            ran_functions: &funcs,
            components: &comps,
        }
        .build()
        .expect("build");
        let k = "initiatingMessage";
        let hex_id = format!(
            "{:0w$x}",
            u64::from(gnb_id) << ((8 - bits % 8) % 8),
            w = usize::from(bits).div_ceil(8) * 2
        );
        cases.push((
            "E2SetupRequest",
            b.to_vec(),
            vec![
                (format!("/{k}/procedureCode"), json!(1)),
                (ie(k, 0, "/value"), json!(17)),
                (
                    ie(k, 1, "/value/gNB/global-gNB-ID/plmn-id"),
                    json!("13f184"),
                ),
                (
                    ie(k, 1, "/value/gNB/global-gNB-ID/gnb-id/gnb-ID"),
                    json!({"length": bits, "value": hex_id}),
                ),
                (ie(k, 2, "/value/0/value/ranFunctionID"), json!(2)),
                (
                    ie(k, 2, "/value/0/value/ranFunctionDefinition"),
                    json!("dead"),
                ),
                (ie(k, 2, "/value/0/value/ranFunctionRevision"), json!(3)),
                (
                    ie(k, 2, "/value/0/value/ranFunctionOID"),
                    json!("1.3.6.1.4.1.53148.1.2.2.2"),
                ),
                (ie(k, 2, "/value/1/value/ranFunctionID"), json!(4095)),
                (
                    ie(
                        k,
                        3,
                        "/value/0/value/e2nodeComponentID/e2nodeComponentInterfaceTypeNG/amf-name",
                    ),
                    json!("amf1"),
                ),
            ],
        ));
    }
    let k = "successfulOutcome";
    let b = build::E2SetupResponse {
        transaction_id: 17,
        ric: GlobalRicId {
            plmn: [0x13, 0xf1, 0x84],
            ric_id: 0xabcde,
        },
        accepted: &[(2, 3)],
        rejected: &[(4095, Cause::RicService(0))],
        components: &[ComponentId::Ng { amf_name: "amf1" }],
    }
    .build()
    .expect("build");
    cases.push((
        "E2SetupResponse",
        b.to_vec(),
        vec![
            (ie(k, 0, "/value"), json!(17)),
            (ie(k, 1, "/value/ric-ID"), json!("abcde0")),
            (ie(k, 2, "/id"), json!(9)),
            (ie(k, 2, "/value/0/value/ranFunctionID"), json!(2)),
            (
                ie(k, 3, "/value/0/value/cause/ricService"),
                json!("ran-function-not-supported"),
            ),
            (
                ie(
                    k,
                    4,
                    "/value/0/value/e2nodeComponentConfigurationAck/updateOutcome",
                ),
                json!("success"),
            ),
        ],
    ));
    let k = "unsuccessfulOutcome";
    let b = build::E2SetupFailure {
        transaction_id: 3,
        cause: Cause::Misc(2),
        time_to_wait: Some(5),
    }
    .build()
    .expect("build");
    cases.push((
        "E2SetupFailure",
        b.to_vec(),
        vec![
            (ie(k, 0, "/value"), json!(3)),
            (ie(k, 1, "/value/misc"), json!("om-intervention")),
            (ie(k, 2, "/value"), json!("v60s")),
        ],
    ));
    let k = "initiatingMessage";
    let actions = [
        build::Action {
            id: 1,
            kind: ActionType::Report,
            definition: Some(b"\xaa"),
        },
        build::Action {
            id: 2,
            kind: ActionType::Insert,
            definition: None,
        },
        build::Action {
            id: 3,
            kind: ActionType::Policy,
            definition: None,
        },
    ];
    let b = build::SubscriptionRequest {
        request: REQ,
        ran_function: 147,
        event_trigger: b"\x01\x02",
        actions: &actions,
    }
    .build()
    .expect("build");
    cases.push((
        "SubscriptionRequest",
        b.to_vec(),
        vec![
            (format!("/{k}/procedureCode"), json!(8)),
            (
                ie(k, 0, "/value"),
                json!({"ricRequestorID": 0xbeef, "ricInstanceID": 65535}),
            ),
            (ie(k, 1, "/value"), json!(147)),
            (ie(k, 2, "/value/ricEventTriggerDefinition"), json!("0102")),
            (
                ie(
                    k,
                    2,
                    "/value/ricAction-ToBeSetup-List/0/value/ricActionType",
                ),
                json!("report"),
            ),
            (
                ie(
                    k,
                    2,
                    "/value/ricAction-ToBeSetup-List/0/value/ricActionDefinition",
                ),
                json!("aa"),
            ),
            (
                ie(
                    k,
                    2,
                    "/value/ricAction-ToBeSetup-List/1/value/ricActionType",
                ),
                json!("insert"),
            ),
            (
                ie(
                    k,
                    2,
                    "/value/ricAction-ToBeSetup-List/2/value/ricActionType",
                ),
                json!("policy"),
            ),
            (
                ie(k, 2, "/value/ricAction-ToBeSetup-List/2/value/ricActionID"),
                json!(3),
            ),
        ],
    ));
    let k = "successfulOutcome";
    let b = build::SubscriptionResponse {
        request: REQ,
        ran_function: 147,
        admitted: &[1, 2],
        not_admitted: &[(3, Cause::RicRequest(1))],
    }
    .build()
    .expect("build");
    cases.push((
        "SubscriptionResponse",
        b.to_vec(),
        vec![
            (ie(k, 2, "/value/1/value/ricActionID"), json!(2)),
            (ie(k, 3, "/value/0/value/ricActionID"), json!(3)),
            (
                ie(k, 3, "/value/0/value/cause/ricRequest"),
                json!("action-not-supported"),
            ),
        ],
    ));
    let k = "unsuccessfulOutcome";
    let b = build::SubscriptionFailure {
        request: REQ,
        ran_function: 147,
        cause: Cause::RicRequest(6),
    }
    .build()
    .expect("build");
    cases.push((
        "SubscriptionFailure",
        b.to_vec(),
        vec![
            (format!("/{k}/procedureCode"), json!(8)),
            (ie(k, 2, "/value/ricRequest"), json!("request-id-unknown")),
        ],
    ));
    let del = build::SubscriptionDelete {
        request: REQ,
        ran_function: 147,
    };
    let b = del.build_request().expect("build");
    cases.push((
        "SubscriptionDeleteRequest",
        b.to_vec(),
        vec![
            ("/initiatingMessage/procedureCode".into(), json!(9)),
            (ie("initiatingMessage", 1, "/value"), json!(147)),
        ],
    ));
    let b = del.build_response().expect("build");
    cases.push((
        "SubscriptionDeleteResponse",
        b.to_vec(),
        vec![(
            ie("successfulOutcome", 0, "/value/ricInstanceID"),
            json!(65535),
        )],
    ));
    let b = build::SubscriptionDeleteFailure {
        request: REQ,
        ran_function: 147,
        cause: Cause::Protocol(4),
    }
    .build()
    .expect("build");
    cases.push((
        "SubscriptionDeleteFailure",
        b.to_vec(),
        vec![(
            ie("unsuccessfulOutcome", 2, "/value/protocol"),
            json!("semantic-error"),
        )],
    ));
    let k = "initiatingMessage";
    for (label, msg) in [
        ("Indication", &b"\x01\x02\x03"[..]),
        ("Indication100k", &big[..]),
    ] {
        let b = build::Indication {
            request: REQ,
            ran_function: 2,
            action_id: 7,
            sn: Some(4242),
            kind: build::IndicationType::Report,
            header: b"\x0f",
            message: msg,
        }
        .build()
        .expect("build");
        cases.push((
            label,
            b.to_vec(),
            vec![
                (format!("/{k}/procedureCode"), json!(5)),
                (format!("/{k}/criticality"), json!("ignore")),
                (ie(k, 2, "/value"), json!(7)),
                (ie(k, 3, "/value"), json!(4242)),
                (ie(k, 4, "/value"), json!("report")),
                (ie(k, 5, "/value"), json!("0f")),
                (ie(k, 6, "/value"), json!(hex::encode(msg))),
            ],
        ));
    }
    let b = build::ControlRequest {
        request: REQ,
        ran_function: 2,
        header: b"\xcc",
        message: &big[..70_000],
        ack_request: Some(true),
    }
    .build()
    .expect("build");
    cases.push((
        "ControlRequest70k",
        b.to_vec(),
        vec![
            (ie(k, 2, "/value"), json!("cc")),
            (ie(k, 3, "/value"), json!(hex::encode(&big[..70_000]))),
            (ie(k, 4, "/value"), json!("ack")),
        ],
    ));
    let b = build::ControlAcknowledge {
        request: REQ,
        ran_function: 2,
        outcome: Some(b"\x99"),
    }
    .build()
    .expect("build");
    cases.push((
        "ControlAcknowledge",
        b.to_vec(),
        vec![(ie("successfulOutcome", 2, "/value"), json!("99"))],
    ));
    let b = build::ControlFailure {
        request: REQ,
        ran_function: 2,
        cause: Cause::RicRequest(11),
        outcome: None,
    }
    .build()
    .expect("build");
    cases.push((
        "ControlFailure",
        b.to_vec(),
        vec![(
            ie("unsuccessfulOutcome", 2, "/value/ricRequest"),
            json!("control-failed-to-execute"),
        )],
    ));
    let b = build::ErrorIndication {
        transaction_id: Some(9),
        request: Some(REQ),
        ran_function: Some(12),
        cause: Some(Cause::Protocol(0)),
    }
    .build()
    .expect("build");
    cases.push((
        "ErrorIndication",
        b.to_vec(),
        vec![
            ("/initiatingMessage/procedureCode".into(), json!(2)),
            (ie(k, 0, "/value"), json!(9)),
            (ie(k, 2, "/value"), json!(12)),
            (ie(k, 3, "/value/protocol"), json!("transfer-syntax-error")),
        ],
    ));
    let b = build::ResetRequest {
        transaction_id: 1,
        cause: Cause::E2Node(0),
    }
    .build()
    .expect("build");
    cases.push((
        "ResetRequest",
        b.to_vec(),
        vec![(ie(k, 1, "/value/e2Node"), json!("e2node-component-unknown"))],
    ));
    let b = build::ResetResponse { transaction_id: 1 }
        .build()
        .expect("build");
    cases.push((
        "ResetResponse",
        b.to_vec(),
        vec![("/successfulOutcome/procedureCode".into(), json!(3))],
    ));
    cases
}

#[test]
fn builders_decode_in_pycrate() {
    require_pycrate();
    let cases = builder_cases();
    let input: String = cases
        .iter()
        .map(|(_, b, _)| hex::encode(b) + "\n")
        .collect();
    let (ok, lines) = pipe(Command::new("python3").arg(oracle()).arg("jer"), &input);
    assert!(ok, "pycrate_oracle.py jer failed");
    assert_eq!(lines.len(), cases.len());
    let mut failures = Vec::new();
    for ((label, bytes, expect), line) in cases.iter().zip(&lines) {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        let Some(jer) = v.get("jer") else {
            failures.push(format!("{label}: pycrate could not decode: {}", v["error"]));
            continue;
        };
        for (ptr, want) in expect {
            let got = jer.pointer(ptr);
            if got != Some(want) {
                let shown = got.map(|g| {
                    let s = g.to_string();
                    s.chars().take(120).collect::<String>()
                });
                let want: String = want.to_string().chars().take(120).collect();
                failures.push(format!(
                    "{label}: {ptr}: pycrate has {shown:?}, want {want}"
                ));
            }
        }
        // and the peek reads every builder's output
        if let Err(e) = Envelope::parse(bytes) {
            failures.push(format!("{label}: peek failed: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
