//! Bearer-token access control of the admin API.
//!
//! Who may do what depends on the request, on whether the admin server is
//! bound to a loopback address, and on whether a token is configured
//! (`[admin] token_file` or `token_env`):
//!
//! | request | loopback, no token | loopback, token | other bind, token |
//! |---|---|---|---|
//! | `GET /metrics`, `/healthz`, `/readyz` | open | open | open |
//! | other `GET`/`HEAD` (`/api/v1/…`) | open | open | token |
//! | any other method (`POST`, `PUT`, `DELETE`, … under `/api/`) | open | token | token |
//!
//! A non-loopback bind without a token is refused by configuration
//! validation; a server started that way anyway (through the library)
//! answers 403 to everything but the three open routes.
//!
//! "token" means `Authorization: Bearer <token>`: missing (or another
//! scheme) is 401 with `WWW-Authenticate: Bearer`, a wrong token is 403.
//! Only a SHA-256 digest of the secret is kept, and a presented token is
//! hashed and compared with it in constant time (`subtle`), so neither the
//! secret's bytes nor its length leak through timing. The secret itself is
//! never logged, and neither is a presented one.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hyper::{HeaderMap, Method};
use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

/// Shortest secret accepted (characters).
pub const MIN_TOKEN_LEN: usize = 16;

/// A token could not be loaded; each variant names the configuration key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("admin.token_file: cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin.token_env: environment variable {0} is not set (or not UTF-8)")]
    EnvMissing(String),
    #[error("{key}: the token must be at least {MIN_TOKEN_LEN} characters")]
    TooShort { key: &'static str },
    #[error(
        "{key}: the token must be visible ASCII without spaces (it travels in an HTTP header)"
    )]
    BadChars { key: &'static str },
}

/// Where the token comes from (`[admin] token_file` / `token_env`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
}

impl TokenSource {
    /// Read the secret. A file's surrounding whitespace (its final newline)
    /// is dropped.
    pub fn load(&self) -> Result<Token, TokenError> {
        match self {
            TokenSource::File(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| TokenError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                warn_if_readable_by_others(p);
                Token::new(text.trim(), "admin.token_file")
            }
            TokenSource::Env(name) => {
                let v = std::env::var(name).map_err(|_| TokenError::EnvMissing(name.clone()))?;
                Token::new(v.trim(), "admin.token_env")
            }
        }
    }

    /// For logs: where the token came from (never the token).
    pub fn describe(&self) -> String {
        match self {
            TokenSource::File(p) => format!("file {}", p.display()),
            TokenSource::Env(n) => format!("environment variable {n}"),
        }
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(p) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %p.display(), "admin token file is readable by group or others (chmod 600)");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// The admin bearer token, kept as its SHA-256 digest only.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, b).as_ref());
    out
}

impl Token {
    /// A token from its secret; `key` names the configuration key in errors.
    pub fn new(secret: &str, key: &'static str) -> Result<Token, TokenError> {
        if secret.chars().count() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort { key });
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::BadChars { key });
        }
        Ok(Token {
            digest: sha256(secret.as_bytes()),
        })
    }

    /// Constant-time comparison with a presented secret.
    pub fn matches(&self, presented: &[u8]) -> bool {
        sha256(presented).ct_eq(&self.digest).into()
    }
}

/// What a request is, for access control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `GET /metrics`, `/healthz`, `/readyz`: Prometheus and kubelet probes.
    Probe,
    /// Any other `GET` or `HEAD`.
    Read,
    /// Any other method.
    Mutate,
}

impl Access {
    pub fn of(method: &Method, path: &str) -> Access {
        let read = method == Method::GET || method == Method::HEAD;
        match path {
            "/metrics" | "/healthz" | "/readyz" if read => Access::Probe,
            _ if read => Access::Read,
            _ => Access::Mutate,
        }
    }
}

/// The outcome of the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// No `Authorization: Bearer` header: 401.
    Missing,
    /// A bearer token that is not the configured one: 403.
    Wrong,
    /// Not allowed on this bind whatever is presented (no token configured on
    /// a non-loopback bind): 403.
    Forbidden,
}

/// The access policy of one admin server.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The server is bound to a loopback address.
    pub loopback: bool,
    pub token: Option<Token>,
}

/// Is `ip` a loopback address (an IPv4-mapped one included)?
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The `Bearer` credentials of an `Authorization` header, if any.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(hyper::header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    let cred = &rest[start..];
    let end = cred.iter().rposition(|&b| b != b' ').map_or(0, |e| e + 1);
    Some(&cred[..end])
}

impl Policy {
    /// Apply the decision table of the module doc.
    pub fn check(&self, access: Access, headers: &HeaderMap) -> Verdict {
        let needs_token = match access {
            Access::Probe => false,
            Access::Read => !self.loopback,
            Access::Mutate => !self.loopback || self.token.is_some(),
        };
        if !needs_token {
            return Verdict::Allow;
        }
        let Some(token) = &self.token else {
            return Verdict::Forbidden;
        };
        match bearer(headers) {
            None => Verdict::Missing,
            Some(p) if token.matches(p) => Verdict::Allow,
            Some(_) => Verdict::Wrong,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderValue, AUTHORIZATION};

    const SECRET: &str = "s3cret-token-0123456789";

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    fn policy(loopback: bool, token: bool) -> Policy {
        Policy {
            loopback,
            token: token.then(|| Token::new(SECRET, "test").unwrap()),
        }
    }

    #[test]
    fn classification() {
        assert_eq!(Access::of(&Method::GET, "/metrics"), Access::Probe);
        assert_eq!(Access::of(&Method::GET, "/readyz"), Access::Probe);
        assert_eq!(Access::of(&Method::GET, "/api/v1/backends"), Access::Read);
        assert_eq!(Access::of(&Method::HEAD, "/api/v1/backends"), Access::Read);
        assert_eq!(
            Access::of(&Method::POST, "/api/v1/backends"),
            Access::Mutate
        );
        assert_eq!(Access::of(&Method::PUT, "/api/v1/x"), Access::Mutate);
        assert_eq!(Access::of(&Method::DELETE, "/api/v1/x"), Access::Mutate);
        assert_eq!(Access::of(&Method::POST, "/metrics"), Access::Mutate);
        assert_eq!(Access::of(&Method::GET, "/metrics/"), Access::Read);
    }

    /// Every cell of the module doc's table.
    #[test]
    fn decision_table() {
        use Access::*;
        use Verdict::*;
        let right = format!("Bearer {SECRET}");
        // (loopback, token configured, access, header) → verdict
        let cases: &[(bool, bool, Access, Option<&str>, Verdict)] = &[
            (true, false, Probe, None, Allow),
            (true, false, Read, None, Allow),
            (true, false, Mutate, None, Allow),
            (true, true, Probe, None, Allow),
            (true, true, Read, None, Allow),
            (true, true, Mutate, None, Missing),
            (
                true,
                true,
                Mutate,
                Some("Bearer nope-nope-nope-nope"),
                Wrong,
            ),
            (true, true, Mutate, Some(&right), Allow),
            (false, true, Probe, None, Allow),
            (false, true, Read, None, Missing),
            (false, true, Read, Some("Bearer x"), Wrong),
            (false, true, Read, Some(&right), Allow),
            (false, true, Mutate, None, Missing),
            (false, true, Mutate, Some(&right), Allow),
            (false, false, Probe, None, Allow),
            (false, false, Read, Some(&right), Forbidden),
            (false, false, Mutate, None, Forbidden),
        ];
        for &(lo, tok, access, h, want) in cases {
            assert_eq!(
                policy(lo, tok).check(access, &headers(h)),
                want,
                "loopback={lo} token={tok} {access:?} {h:?}"
            );
        }
    }

    #[test]
    fn bearer_parsing() {
        let p = policy(false, true);
        let check = |h: &str| p.check(Access::Read, &headers(Some(h)));
        assert_eq!(check(&format!("bearer {SECRET}")), Verdict::Allow);
        assert_eq!(check(&format!("BEARER   {SECRET}  ")), Verdict::Allow);
        assert_eq!(check(&format!("Basic {SECRET}")), Verdict::Missing);
        assert_eq!(check("Bearer"), Verdict::Missing);
        assert_eq!(check("Bearer "), Verdict::Missing);
        assert_eq!(check(&format!("Bearer {SECRET}x")), Verdict::Wrong);
        assert_eq!(check(&format!("Bearer {}", &SECRET[1..])), Verdict::Wrong);
    }

    #[test]
    fn tokens_are_checked_and_never_printed() {
        assert!(matches!(
            Token::new("short", "admin.token_env"),
            Err(TokenError::TooShort { .. })
        ));
        assert!(matches!(
            Token::new("has a space in it, too long", "admin.token_env"),
            Err(TokenError::BadChars { .. })
        ));
        let t = Token::new(SECRET, "k").unwrap();
        assert!(!format!("{t:?}").contains(SECRET));
        assert!(t.matches(SECRET.as_bytes()));
        assert!(!t.matches(b""));
    }

    #[test]
    fn token_sources() {
        let dir = std::env::temp_dir().join(format!("e2lb-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token");
        std::fs::write(&f, format!("{SECRET}\n")).unwrap();
        let t = TokenSource::File(f.clone()).load().unwrap();
        assert!(t.matches(SECRET.as_bytes()));
        let e = TokenSource::File(dir.join("absent")).load().unwrap_err();
        assert!(e.to_string().starts_with("admin.token_file"), "{e}");
        let e = TokenSource::Env("E2LB_TEST_TOKEN_THAT_IS_NOT_SET".into())
            .load()
            .unwrap_err();
        assert!(
            e.to_string().contains("E2LB_TEST_TOKEN_THAT_IS_NOT_SET"),
            "{e}"
        );
        assert!(!TokenSource::File(f).describe().contains(SECRET));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("127.9.9.9".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("0.0.0.0".parse().unwrap()));
        assert!(!is_loopback("::".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    }
}
