//! Configuration: TOML, validated completely before anything starts.
//!
//! The documented example `config/e2lb.toml` is also the embedded default
//! ([`Config::embedded`]), so its values are the defaults by construction (a
//! test checks that the file and `Config::default()` agree).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::balance::Backend;
use crate::proxy::ProxyConfig;
use crate::session::{BackendId, SessionConfig, TimeToWait};
use crate::transport::Options;

/// The embedded default configuration (the documented example file).
pub const EMBEDDED: &str = include_str!("../config/e2lb.toml");

/// Largest `proxy.max_message` accepted: the routing peek follows up to
/// `peek::MAX_SEGMENTS` APER fragments (64 KiB each), so 2 MiB leaves margin.
/// (Real RICs assert on messages of 32 KiB and more, DESIGN §2b.)
pub const MAX_MESSAGE_LIMIT: usize = 2 << 20;

/// A configuration that cannot be used, naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: String, reason: &'static str },
}

fn invalid(key: impl Into<String>, reason: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason,
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(serde::de::Error::custom)
}

/// One SCTP endpoint: one address, or several (comma-separated in the file:
/// `"10.0.0.1:36421,10.0.1.1:36421"`) for a multi-homed endpoint bound with
/// `sctp_bindx`, all on one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint(pub Vec<SocketAddr>);

impl Endpoint {
    /// The primary address (the first one written).
    pub fn primary(&self) -> Option<SocketAddr> {
        self.0.first().copied()
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.split(',')
            .map(|a| a.trim().parse::<SocketAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map(Endpoint)
            .map_err(|e| serde::de::Error::custom(format!("{e} in {s:?}")))
    }
}

/// `[proxy]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    pub listen: Vec<Endpoint>,
    pub out_streams: u16,
    pub in_streams: u16,
    pub max_message: usize,
    pub queue: usize,
    pub max_associations: usize,
    #[serde(deserialize_with = "duration")]
    pub first_message_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub setup_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_after: Duration,
    pub socket_buffer: usize,
}

impl Default for ProxySection {
    fn default() -> Self {
        let p = ProxyConfig::default();
        let o = Options::default();
        ProxySection {
            listen: vec![Endpoint(vec![SocketAddr::from(([127, 0, 0, 1], 36421))])],
            out_streams: o.out_streams,
            in_streams: o.in_streams,
            max_message: o.max_message,
            queue: p.queue,
            max_associations: p.max_associations,
            first_message_timeout: p.first_message_timeout,
            connect_timeout: p.connect_timeout,
            setup_timeout: p.session.setup_timeout,
            request_timeout: p.session.request_timeout,
            drain_timeout: p.drain_timeout,
            retry_after: p.session.retry_after.duration(),
            socket_buffer: o.socket_buffer,
        }
    }
}

/// One `[[backends]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    pub name: String,
    pub addr: SocketAddr,
}

/// `[admin]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    pub listen: SocketAddr,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub proxy: ProxySection,
    pub backends: Vec<BackendSection>,
    pub admin: AdminSection,
    pub log: LogSection,
}

impl Config {
    /// Parse and validate TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// The embedded default (config/e2lb.toml).
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED)
    }

    /// Check every bound; the first violation is reported with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.proxy;
        if p.listen.is_empty() {
            return Err(invalid("proxy.listen", "at least one address is needed"));
        }
        for (i, e) in p.listen.iter().enumerate() {
            let port = e.primary().map(|a| a.port());
            if e.0.iter().any(|a| Some(a.port()) != port) {
                return Err(invalid(
                    format!("proxy.listen[{i}]"),
                    "the addresses of a multi-homed endpoint must share one port",
                ));
            }
        }
        if p.out_streams == 0 {
            return Err(invalid("proxy.out_streams", "must be at least 1"));
        }
        if p.in_streams == 0 {
            return Err(invalid("proxy.in_streams", "must be at least 1"));
        }
        if !(64..=MAX_MESSAGE_LIMIT).contains(&p.max_message) {
            return Err(invalid(
                "proxy.max_message",
                "must be between 64 bytes and 2 MiB (2097152)",
            ));
        }
        if !(1..=1 << 20).contains(&p.queue) {
            return Err(invalid(
                "proxy.queue",
                "must be between 1 and 1048576 messages",
            ));
        }
        if p.max_associations == 0 {
            return Err(invalid("proxy.max_associations", "must be at least 1"));
        }
        for (key, d) in [
            ("proxy.first_message_timeout", p.first_message_timeout),
            ("proxy.connect_timeout", p.connect_timeout),
            ("proxy.setup_timeout", p.setup_timeout),
            ("proxy.request_timeout", p.request_timeout),
            ("proxy.drain_timeout", p.drain_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(3600) {
                return Err(invalid(key, "must be more than 0 and at most 1h"));
            }
        }
        if TimeToWait::from_duration(p.retry_after).is_none() {
            return Err(invalid(
                "proxy.retry_after",
                "must be one of 1s, 2s, 5s, 10s, 20s, 60s",
            ));
        }
        if self.backends.is_empty() {
            return Err(invalid(
                "backends",
                "at least one [[backends]] entry is needed",
            ));
        }
        for (i, b) in self.backends.iter().enumerate() {
            if b.name.is_empty() || b.name.len() > 64 {
                return Err(invalid(
                    format!("backends[{i}].name"),
                    "must be 1 to 64 characters",
                ));
            }
            if self.backends[..i].iter().any(|o| o.name == b.name) {
                return Err(invalid(
                    format!("backends[{i}].name"),
                    "duplicate backend name",
                ));
            }
            if b.addr.port() == 0 {
                return Err(invalid(
                    format!("backends[{i}].addr"),
                    "port 0 is not a backend address",
                ));
            }
        }
        Ok(())
    }

    /// Transport options for both legs.
    pub fn transport(&self) -> Options {
        Options {
            out_streams: self.proxy.out_streams,
            in_streams: self.proxy.in_streams,
            max_message: self.proxy.max_message,
            socket_buffer: self.proxy.socket_buffer,
        }
    }

    /// Proxy knobs.
    pub fn proxy(&self) -> ProxyConfig {
        let p = &self.proxy;
        ProxyConfig {
            session: SessionConfig {
                setup_timeout: p.setup_timeout,
                request_timeout: p.request_timeout,
                retry_after: TimeToWait::from_duration(p.retry_after).unwrap_or(TimeToWait::V10s),
            },
            queue: p.queue,
            connect_timeout: p.connect_timeout,
            drain_timeout: p.drain_timeout,
            first_message_timeout: p.first_message_timeout,
            max_associations: p.max_associations,
        }
    }

    /// The backend pool, ids in configuration order.
    pub fn backends(&self) -> Vec<Backend> {
        self.backends
            .iter()
            .enumerate()
            .map(|(i, b)| Backend {
                id: BackendId(i as u32),
                name: b.name.clone(),
                addr: b.addr,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_is_valid_and_states_the_defaults() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.proxy, ProxySection::default());
        assert_eq!(c.admin, AdminSection::default());
        assert_eq!(c.log, LogSection::default());
        assert_eq!(c.backends.len(), 3);
    }

    #[test]
    fn multi_homed_endpoints() {
        let base = "[[backends]]\nname='a'\naddr='127.0.0.1:36421'\n";
        let c = Config::parse(&format!(
            "[proxy]\nlisten = ['127.0.0.1:36421, 127.0.0.2:36421', '[::1]:36421']\n{base}"
        ))
        .unwrap();
        assert_eq!(c.proxy.listen.len(), 2);
        assert_eq!(c.proxy.listen[0].0.len(), 2);
        assert_eq!(
            c.proxy.listen[0].to_string(),
            "127.0.0.1:36421,127.0.0.2:36421"
        );
        let e = Config::parse(&format!(
            "[proxy]\nlisten = ['127.0.0.1:1,127.0.0.2:2']\n{base}"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("proxy.listen[0]"), "{e}");
        let e = Config::parse(&format!("[proxy]\nlisten = ['127.0.0.1']\n{base}")).unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse("[proxy]\nlisten = [\"127.0.0.1:1\"]\nqueu = 3\n").unwrap_err();
        assert!(e.to_string().contains("queu"), "{e}");
    }

    #[test]
    fn bounds_are_named() {
        let base = "[[backends]]\nname='a'\naddr='127.0.0.1:36421'\n";
        let e = Config::parse(&format!("[proxy]\nqueue = 0\n{base}")).unwrap_err();
        assert!(e.to_string().contains("proxy.queue"), "{e}");
        let e = Config::parse(&format!("[proxy]\nsetup_timeout = '0s'\n{base}")).unwrap_err();
        assert!(e.to_string().contains("proxy.setup_timeout"), "{e}");
        let e = Config::parse(&format!("[proxy]\nmax_message = 10000000\n{base}")).unwrap_err();
        assert!(e.to_string().contains("proxy.max_message"), "{e}");
        let e = Config::parse(&format!("[proxy]\nretry_after = '7s'\n{base}")).unwrap_err();
        assert!(e.to_string().contains("proxy.retry_after"), "{e}");
        let e = Config::parse(&format!("{base}{base}")).unwrap_err();
        assert!(e.to_string().contains("backends[1].name"), "{e}");
        let e = Config::parse("").unwrap_err();
        assert!(e.to_string().contains("backends"), "{e}");
        let e = Config::parse(&format!("[proxy]\nconnect_timeout = 'soon'\n{base}")).unwrap_err();
        assert!(e.to_string().contains("connect_timeout"), "{e}");
    }
}
