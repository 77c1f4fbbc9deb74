//! Admin API access control and HTTPS, over real TCP sockets.
//!
//! Each test runs an admin server on a bare pool (one backend, `ric-0`) and
//! checks one column of the decision table in `e2lb::admin::auth`: loopback
//! without a token, loopback with a token, a non-loopback bind (the wildcard
//! `0.0.0.0`, reached through 127.0.0.1) with and without a token, then
//! HTTPS with a certificate made by the test, loading a token and a
//! certificate from the configuration, and `e2lb check-config` refusing a
//! non-loopback bind without a token. Logs are captured to check that no
//! token is ever written.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2lb::admin::auth::{Token, TokenSource};
use e2lb::admin::{self, AdminState, Security};
use e2lb::balance::live::{BalanceSettings, LiveBalancer};
use e2lb::balance::{Backend, Pool};
use e2lb::config::AdminSection;
use e2lb::proxy::{AssocTable, Metrics};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-token-7f3a9c1e5b2d4068";
const WRONG: &str = "test-token-7f3a9c1e5b2d4069";

/// Log lines written while a test runs (one subscriber per test thread).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every event of this thread (the tests use a current-thread
/// runtime, so the server's tasks log here too).
fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let w = logs.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    (logs, tracing::subscriber::set_default(sub))
}

struct Server {
    /// Where the test connects (loopback, even for a wildcard bind).
    addr: SocketAddr,
    state: Arc<AdminState>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(bind: &str, security: Security) -> Server {
        let metrics = Arc::new(Metrics::new().unwrap());
        let pool = Arc::new(Pool::new(vec![Backend::new(
            0,
            "ric-0",
            "127.0.0.1:36421".parse().unwrap(),
        )]));
        let live = Arc::new(
            LiveBalancer::new(
                BalanceSettings::default(),
                &pool,
                &metrics.registry,
                std::time::Instant::now(),
            )
            .unwrap(),
        );
        let state = Arc::new(
            AdminState::new(metrics, pool, live, Arc::new(AssocTable::new()))
                .with_security(security),
        );
        let l = admin::bind(bind.parse().unwrap()).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(admin::serve(l, state.clone(), async move {
            s.cancelled().await
        }));
        Server {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            state,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }

    fn drained(&self) -> bool {
        self.state.pool.find("ric-0").unwrap().draining()
    }

    fn refusals(&self, reason: &str) -> u64 {
        let text = self.state.metrics.render();
        let series = format!("e2lb_admin_auth_refusals_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

fn token() -> Security {
    Security {
        token: Some(Token::new(SECRET, "test").unwrap()),
        tls: None,
    }
}

/// One answer: status, headers (lower-case names) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `{"error": ...}` message (panics when the body is not one).
    fn error(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body));
        v["error"].as_str().expect("an error message").to_owned()
    }
}

/// One HTTP/1.1 request over `io` (closed by the server afterwards).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> Answer {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    if method == "GET" {
        req.push_str("\r\n");
    } else {
        req.push_str("Content-Length: 0\r\n\r\n");
    }
    io.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = io.read_to_end(&mut raw).await;
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(out: &str) -> Answer {
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((out, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn http(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> Answer {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    exchange(s, method, path, auth).await
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[track_caller]
fn assert_unauthorized(a: &Answer) {
    assert_eq!(a.status, 401, "{a:?}");
    let www = a.header("www-authenticate").expect("WWW-Authenticate");
    assert!(www.starts_with("Bearer"), "{www}");
    assert!(a.error().contains("bearer token"), "{a:?}");
}

#[track_caller]
fn assert_forbidden(a: &Answer) {
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.header("www-authenticate").is_none(), "{a:?}");
    assert!(!a.error().is_empty());
}

#[tokio::test]
async fn loopback_without_token_is_open_to_reads_and_mutations() {
    let s = Server::start("127.0.0.1:0", Security::default()).await;
    assert_eq!(
        http(s.addr, "GET", "/api/v1/backends", None).await.status,
        200
    );
    let a = http(s.addr, "POST", "/api/v1/backends/ric-0/drain", None).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(s.drained());
    assert_eq!(s.refusals("missing"), 0);
    s.stop().await;
}

#[tokio::test]
async fn loopback_with_token_mutations_need_it_reads_do_not() {
    let (logs, _g) = capture();
    let s = Server::start("127.0.0.1:0", token()).await;
    assert_eq!(http(s.addr, "GET", "/metrics", None).await.status, 200);
    assert_eq!(http(s.addr, "GET", "/healthz", None).await.status, 200);
    assert_eq!(
        http(s.addr, "GET", "/api/v1/backends", None).await.status,
        200
    );

    let path = "/api/v1/backends/ric-0/drain";
    assert_unauthorized(&http(s.addr, "POST", path, None).await);
    assert_unauthorized(&http(s.addr, "POST", path, Some(&format!("Basic {SECRET}"))).await);
    assert_forbidden(&http(s.addr, "POST", path, Some(&bearer(WRONG))).await);
    assert!(!s.drained(), "a refused request must not act");
    // Every mutating method, known route or not, is checked before routing.
    assert_unauthorized(&http(s.addr, "DELETE", "/api/v1/backends/ric-0", None).await);
    assert_unauthorized(&http(s.addr, "PUT", "/api/v1/backends", None).await);
    assert_forbidden(
        &http(
            s.addr,
            "DELETE",
            "/api/v1/backends/ric-0",
            Some(&bearer(WRONG)),
        )
        .await,
    );
    assert_eq!(s.state.pool.len(), 1);

    let a = http(s.addr, "POST", path, Some(&bearer(SECRET))).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(s.drained());
    let a = http(s.addr, "DELETE", path, Some(&format!("bearer   {SECRET}"))).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(!s.drained());

    assert_eq!(s.refusals("missing"), 4);
    assert_eq!(s.refusals("wrong"), 2);
    s.stop().await;
    let text = logs.text();
    assert!(text.contains("admin request refused"), "{text}");
    assert!(!text.contains(SECRET) && !text.contains(WRONG), "{text}");
}

#[tokio::test]
async fn non_loopback_bind_needs_the_token_for_api_reads_but_not_probes() {
    let s = Server::start("0.0.0.0:0", token()).await;
    assert_eq!(http(s.addr, "GET", "/metrics", None).await.status, 200);
    assert_eq!(http(s.addr, "GET", "/healthz", None).await.status, 200);
    // Not ready (listeners not flagged), but answered without a token.
    assert_eq!(http(s.addr, "GET", "/readyz", None).await.status, 503);

    for path in [
        "/api/v1/backends",
        "/api/v1/associations",
        "/api/v1/balancer",
    ] {
        assert_unauthorized(&http(s.addr, "GET", path, None).await);
        assert_forbidden(&http(s.addr, "GET", path, Some(&bearer(WRONG))).await);
        let a = http(s.addr, "GET", path, Some(&bearer(SECRET))).await;
        assert_eq!(a.status, 200, "{path}: {a:?}");
    }
    assert_unauthorized(&http(s.addr, "POST", "/api/v1/backends/ric-0/drain", None).await);
    let a = http(
        s.addr,
        "POST",
        "/api/v1/backends/ric-0/drain",
        Some(&bearer(SECRET)),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(s.drained());
    s.stop().await;
}

#[tokio::test]
async fn non_loopback_bind_without_token_serves_only_the_probes() {
    // Configuration validation refuses this; the library still fails closed.
    let s = Server::start("0.0.0.0:0", Security::default()).await;
    assert_eq!(http(s.addr, "GET", "/metrics", None).await.status, 200);
    assert_eq!(http(s.addr, "GET", "/healthz", None).await.status, 200);
    assert_forbidden(&http(s.addr, "GET", "/api/v1/backends", None).await);
    assert_forbidden(&http(s.addr, "GET", "/api/v1/backends", Some(&bearer(SECRET))).await);
    assert_forbidden(&http(s.addr, "POST", "/api/v1/backends/ric-0/drain", None).await);
    assert!(!s.drained());
    assert_eq!(s.refusals("forbidden"), 3);
    s.stop().await;
}

/// A self-signed certificate for `localhost` written to PEM files.
struct Cert {
    dir: std::path::PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl Cert {
    fn new(tag: &str) -> Cert {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!("e2lb-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem()).unwrap();
        Cert {
            dir,
            der: ck.cert.der().clone(),
        }
    }
    fn cert(&self) -> std::path::PathBuf {
        self.dir.join("cert.pem")
    }
    fn key(&self) -> std::path::PathBuf {
        self.dir.join("key.pem")
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_client(trust: &rustls::pki_types::CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn https(
    c: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> Answer {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = c.connect(name, tcp).await.expect("TLS handshake");
    exchange(tls, method, path, auth).await
}

#[tokio::test]
async fn https_with_a_self_signed_certificate_and_the_token() {
    let cert = Cert::new("ok");
    let security = Security {
        tls: Some(admin::tls::acceptor(&cert.cert(), &cert.key()).unwrap()),
        ..token()
    };
    let s = Server::start("127.0.0.1:0", security).await;
    let c = tls_client(&cert.der);

    let a = https(&c, s.addr, "GET", "/healthz", None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "ok\n"), "{a:?}");
    let a = https(&c, s.addr, "GET", "/api/v1/backends", None).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_unauthorized(&https(&c, s.addr, "POST", "/api/v1/backends/ric-0/drain", None).await);
    let a = https(
        &c,
        s.addr,
        "POST",
        "/api/v1/backends/ric-0/drain",
        Some(&bearer(SECRET)),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(s.drained());

    // Plain HTTP gets no HTTP answer from the HTTPS port.
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        http(s.addr, "GET", "/healthz", None),
    )
    .await
    .expect("the server closes a plain-HTTP connection");
    assert_eq!(plain.status, 0, "{plain:?}");
    // A client that does not trust this certificate fails the handshake.
    let other = Cert::new("other");
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    assert!(tls_client(&other.der).connect(name, tcp).await.is_err());
    s.stop().await;
}

#[test]
fn security_from_config_loads_token_and_certificate_and_names_bad_keys() {
    let (logs, _g) = capture();
    let cert = Cert::new("cfg");
    let token_file = cert.dir.join("token");
    std::fs::write(&token_file, format!("{SECRET}\n")).unwrap();
    let section = AdminSection {
        listen: "0.0.0.0:9090".parse().unwrap(),
        token_file: token_file.display().to_string(),
        tls_cert: cert.cert().display().to_string(),
        tls_key: cert.key().display().to_string(),
        ..AdminSection::default()
    };
    let sec = Security::from_config(&section).unwrap();
    assert!(sec.token.as_ref().unwrap().matches(SECRET.as_bytes()));
    assert!(sec.tls.is_some());
    let text = logs.text();
    assert!(text.contains("bearer token configured"), "{text}");
    assert!(!text.contains(SECRET), "{text}");

    // From the environment (a variable only this test uses).
    let var = format!("E2LB_TEST_ADMIN_TOKEN_{}", std::process::id());
    std::env::set_var(&var, SECRET);
    let env = AdminSection {
        token_env: var.clone(),
        ..AdminSection::default()
    };
    let sec = Security::from_config(&env).unwrap();
    assert!(sec.token.unwrap().matches(SECRET.as_bytes()));
    assert!(sec.tls.is_none());
    std::env::set_var(&var, "short");
    let e = Security::from_config(&env).unwrap_err().to_string();
    assert!(e.contains("admin.token_env") && e.contains("16"), "{e}");
    std::env::remove_var(&var);
    let e = Security::from_config(&env).unwrap_err().to_string();
    assert!(e.contains("admin.token_env") && e.contains(&var), "{e}");
    let via = TokenSource::Env(var);
    assert!(Security::default().with_token(&via).is_err());

    // Unreadable token file, bad certificate, key that is not a key.
    let bad = |f: &dyn Fn(&mut AdminSection)| {
        let mut s = AdminSection::default();
        f(&mut s);
        Security::from_config(&s).unwrap_err().to_string()
    };
    let e = bad(&|s| s.token_file = cert.dir.join("absent").display().to_string());
    assert!(e.starts_with("admin.token_file"), "{e}");
    let e = bad(&|s| {
        s.tls_cert = cert.dir.join("absent.pem").display().to_string();
        s.tls_key = cert.key().display().to_string();
    });
    assert!(e.starts_with("admin.tls_cert"), "{e}");
    let e = bad(&|s| {
        s.tls_cert = cert.key().display().to_string();
        s.tls_key = cert.key().display().to_string();
    });
    assert!(
        e.starts_with("admin.tls_cert") && e.contains("no certificate"),
        "{e}"
    );
    let e = bad(&|s| {
        s.tls_cert = cert.cert().display().to_string();
        s.tls_key = cert.cert().display().to_string();
    });
    assert!(e.starts_with("admin.tls_key"), "{e}");
    // A key that does not belong to the certificate.
    let other = Cert::new("mismatch");
    let e = bad(&|s| {
        s.tls_cert = cert.cert().display().to_string();
        s.tls_key = other.key().display().to_string();
    });
    assert!(e.contains("admin.tls_cert / admin.tls_key"), "{e}");
}

#[test]
fn check_config_refuses_a_non_loopback_admin_bind_without_a_token() {
    let dir = std::env::temp_dir().join(format!("e2lb-checkcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("e2lb.toml");
    let base = "[[backends]]\nname = 'a'\naddr = '127.0.0.1:36421'\n";
    let run = |admin: &str| {
        std::fs::write(&file, format!("[admin]\n{admin}\n{base}")).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_e2lb"))
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = run("listen = '0.0.0.0:9090'");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`admin.listen`") && err.contains("token"),
        "{err}"
    );
    let out = run("listen = '0.0.0.0:9090'\ntoken_env = 'E2LB_ADMIN_TOKEN'");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
