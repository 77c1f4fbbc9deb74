//! Configuration: TOML, validated completely before anything starts.
//!
//! The documented example `config/e2lb.toml` is also the embedded default
//! ([`Config::embedded`]), so its values are the defaults by construction (a
//! test checks that the file and `Config::default()` agree).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::admin::auth::TokenSource;
use crate::balance::bnb::{BnbConfig, InvalidBnb};
use crate::balance::live::BalanceSettings;
use crate::balance::load::{Limits, LoadModel, Thresholds, Weights};
use crate::balance::{Backend, LatencyConfig};
use crate::migrate::plan::PlannerConfig;
use crate::migrate::ExecutorConfig;
use crate::probe::{MetricNames, ProbeConfig, Prober, PromqlConfig, Source, Target};
use crate::proxy::{AllowList, Pace, ProxyConfig};
use crate::router::group::{NodeGroup, PodChoice, RouterSettings};
use crate::router::{PodFailure, RouterConfig};
use crate::scale::actuator::exec::ExecConfig;
use crate::scale::actuator::kubernetes::KubernetesConfig;
use crate::scale::actuator::Provisioned;
use crate::scale::control::ScaleSettings;
use crate::scale::pid::PidConfig;
use crate::scale::policy::ScalerConfig;
use crate::session::{BackendId, RehomeConfig, SessionConfig, TimeToWait};
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
    /// Payload bytes queued per direction of one association before e2lb
    /// stops reading the sender.
    pub queue_bytes: usize,
    pub max_associations: usize,
    /// E2 Setups per second towards each backend (0: unpaced).
    pub setup_rate_per_backend: u32,
    /// E2 Setups allowed back to back towards one backend.
    pub setup_burst: u32,
    /// Longest a node's E2 Setup waits for its slot before it is answered
    /// E2 Setup Failure with TimeToWait.
    #[serde(deserialize_with = "duration")]
    pub setup_wait_max: Duration,
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
    /// Source networks E2 nodes may connect from (empty: any).
    pub allow: AllowList,
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
            queue_bytes: p.queue_bytes,
            max_associations: p.max_associations,
            setup_rate_per_backend: p.setup_pace.rate as u32,
            setup_burst: p.setup_pace.burst,
            setup_wait_max: p.setup_wait_max,
            first_message_timeout: p.first_message_timeout,
            connect_timeout: p.connect_timeout,
            setup_timeout: p.session.setup_timeout,
            request_timeout: p.session.request_timeout,
            drain_timeout: p.drain_timeout,
            retry_after: p.session.retry_after.duration(),
            socket_buffer: o.socket_buffer,
            allow: p.allow,
        }
    }
}

/// One `[[backends]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    pub name: String,
    pub addr: SocketAddr,
    /// Further addresses of a multi-homed E2 termination, on `addr`'s port:
    /// associations are opened to all of them (`sctp_connectx`).
    #[serde(default)]
    pub secondary_addrs: Vec<SocketAddr>,
    /// Metrics URL probed for CPU and processing time. Default (when
    /// `[probe] enabled`): `http://<addr's host>:<probe.metrics_port><probe.metrics_path>`.
    #[serde(default)]
    pub metrics: Option<String>,
}

/// `[balance]`: the Bull-and-Bear rule.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceSection {
    pub weight_cpu: f64,
    pub weight_latency: f64,
    pub weight_proc_time: f64,
    pub weight_in_flight: f64,
    pub cpu_max: f64,
    #[serde(deserialize_with = "duration")]
    pub latency_max: Duration,
    #[serde(deserialize_with = "duration")]
    pub proc_time_max: Duration,
    pub in_flight_max: u32,
    pub associations_max: u32,
    pub threshold_c: f64,
    pub threshold_cpu: f64,
    pub threshold_latency: f64,
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
    #[serde(deserialize_with = "duration")]
    pub latency_max_age: Duration,
    pub latency_min_samples: u32,
    pub exit_c: f64,
    pub exit_cpu: f64,
    pub exit_latency: f64,
    #[serde(deserialize_with = "duration")]
    pub hold: Duration,
    #[serde(deserialize_with = "duration")]
    pub settle: Duration,
    #[serde(deserialize_with = "duration")]
    pub publish_interval: Duration,
    pub latency_ewma: f64,
    #[serde(deserialize_with = "duration")]
    pub latency_window: Duration,
    pub decisions: usize,
}

impl Default for BalanceSection {
    fn default() -> Self {
        let m = LoadModel::default();
        let b = BnbConfig::default();
        let s = BalanceSettings::default();
        let l = LatencyConfig::default();
        BalanceSection {
            weight_cpu: m.weights.cpu,
            weight_latency: m.weights.latency,
            weight_proc_time: m.weights.proc_time,
            weight_in_flight: m.weights.in_flight,
            cpu_max: m.limits.cpu_max,
            latency_max: m.limits.latency_max,
            proc_time_max: m.limits.proc_time_max,
            in_flight_max: m.limits.in_flight_max,
            associations_max: m.limits.associations_max,
            threshold_c: m.thresholds.c,
            threshold_cpu: m.thresholds.cpu,
            threshold_latency: m.thresholds.latency,
            max_age: m.max_age,
            latency_max_age: m.latency_max_age,
            latency_min_samples: l.min_samples,
            exit_c: b.exit_c,
            exit_cpu: b.exit_cpu,
            exit_latency: b.exit_latency,
            hold: b.hold,
            settle: b.settle,
            publish_interval: s.publish_interval,
            latency_ewma: l.alpha,
            latency_window: l.window,
            decisions: s.decisions,
        }
    }
}

/// Which actuator carries out scaling decisions.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ActuatorKind {
    /// `[[scale.standby]]` backends activated / deactivated.
    Static,
    /// Local processes started and stopped with `[scale.exec]` commands.
    #[default]
    Exec,
    /// The scale subresource of a Deployment/StatefulSet; backends from
    /// EndpointSlices (`[scale.kubernetes]`).
    Kubernetes,
}

/// `[scale.exec]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ExecSection {
    pub start: Vec<String>,
    pub addresses: Vec<SocketAddr>,
    pub name_prefix: String,
    #[serde(deserialize_with = "duration")]
    pub stop_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub ready_timeout: Duration,
    pub restart: bool,
    #[serde(deserialize_with = "duration")]
    pub restart_backoff: Duration,
    pub log_dir: String,
}

impl Default for ExecSection {
    fn default() -> Self {
        let e = ExecConfig::default();
        ExecSection {
            start: e.start,
            addresses: e.addresses,
            name_prefix: e.name_prefix,
            stop_timeout: e.stop_timeout,
            ready_timeout: e.ready_timeout,
            restart: e.restart,
            restart_backoff: e.restart_backoff,
            log_dir: String::new(),
        }
    }
}

/// `[scale.leader]`: leader election among e2lb replicas (etcd).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderSection {
    /// etcd client URLs; empty: this replica always leads (single replica).
    pub etcd: Vec<String>,
    pub key: String,
    /// This replica's identity; empty: `hostname-pid`.
    pub id: String,
    #[serde(deserialize_with = "duration")]
    pub lease_ttl: Duration,
}

impl Default for LeaderSection {
    fn default() -> Self {
        LeaderSection {
            etcd: Vec::new(),
            key: crate::leader::DEFAULT_KEY.into(),
            id: String::new(),
            lease_ttl: crate::leader::DEFAULT_LEASE_TTL,
        }
    }
}

/// `[scale]`: the built-in scaler.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleSection {
    pub enabled: bool,
    pub actuator: ActuatorKind,
    #[serde(deserialize_with = "duration")]
    pub tick: Duration,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub up_cpu: f64,
    pub up_c: f64,
    pub down_cpu: f64,
    #[serde(deserialize_with = "duration")]
    pub down_for: Duration,
    #[serde(deserialize_with = "duration")]
    pub up_cooldown: Duration,
    #[serde(deserialize_with = "duration")]
    pub down_cooldown: Duration,
    pub max_step: u32,
    #[serde(deserialize_with = "duration")]
    pub grace: Duration,
    pub room_cpu: f64,
    pub pid_kp: f64,
    pub pid_ki: f64,
    pub pid_kd: f64,
    pub pid_integral_limit: f64,
    pub pid_output_limit: f64,
    #[serde(deserialize_with = "duration")]
    pub start_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_min: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_max: Duration,
    pub records: usize,
    pub standby: Vec<BackendSection>,
    pub exec: ExecSection,
    pub kubernetes: Option<KubernetesConfig>,
    pub leader: LeaderSection,
}

impl Default for ScaleSection {
    fn default() -> Self {
        let p = ScalerConfig::default();
        let s = ScaleSettings::default();
        ScaleSection {
            // Off unless configured: a scaler starts and stops pods. The
            // embedded default (the demo) turns it on.
            enabled: false,
            actuator: ActuatorKind::Exec,
            tick: s.tick,
            min_replicas: p.min_replicas,
            // The paper's experiment scales 1..3; e2lb's default leaves room
            // for the six loopback addresses of `[scale.exec]`.
            max_replicas: 6,
            up_cpu: p.up_cpu,
            up_c: p.up_c,
            down_cpu: p.down_cpu,
            down_for: p.down_for,
            up_cooldown: p.up_cooldown,
            down_cooldown: p.down_cooldown,
            max_step: p.max_step,
            grace: p.grace,
            room_cpu: p.room_cpu,
            pid_kp: p.pid.kp,
            pid_ki: p.pid.ki,
            pid_kd: p.pid.kd,
            pid_integral_limit: p.pid.integral_limit,
            pid_output_limit: p.pid.output_limit,
            start_timeout: s.start_timeout,
            retry_min: s.retry_min,
            retry_max: s.retry_max,
            records: s.records,
            standby: Vec::new(),
            exec: ExecSection::default(),
            kubernetes: None,
            leader: LeaderSection::default(),
        }
    }
}

/// Where probe figures come from.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProbeSource {
    /// GET each backend's metrics URL (Prometheus text exposition).
    #[default]
    Exposition,
    /// PromQL instant queries against `[probe.promql] url`.
    Promql,
}

/// `[probe.promql]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PromqlSection {
    pub url: String,
    pub label: String,
    pub value: String,
    pub cpu: String,
    pub proc_time: String,
    pub latency: String,
}

impl Default for PromqlSection {
    fn default() -> Self {
        let p = PromqlConfig::default();
        PromqlSection {
            url: p.base_url,
            label: p.label,
            value: p.value_template,
            cpu: p.cpu.unwrap_or_default(),
            proc_time: p.proc_time.unwrap_or_default(),
            latency: p.latency.unwrap_or_default(),
        }
    }
}

/// `[probe]`: active probes of backend load figures.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSection {
    pub enabled: bool,
    pub source: ProbeSource,
    #[serde(deserialize_with = "duration")]
    pub tick: Duration,
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub max_body: usize,
    pub metrics_port: u16,
    pub metrics_path: String,
    pub cpu: String,
    pub proc_time: String,
    pub latency: String,
    pub promql: PromqlSection,
}

impl Default for ProbeSection {
    fn default() -> Self {
        let p = ProbeConfig::default();
        ProbeSection {
            enabled: true,
            source: ProbeSource::Exposition,
            tick: p.tick,
            timeout: p.timeout,
            unhealthy_after: p.unhealthy_after,
            max_body: p.max_body,
            metrics_port: 8080,
            metrics_path: "/metrics".into(),
            cpu: p.metrics.cpu.unwrap_or_default(),
            proc_time: p.metrics.proc_time.unwrap_or_default(),
            latency: p.metrics.latency.unwrap_or_default(),
            promql: PromqlSection::default(),
        }
    }
}

fn nonempty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_owned())
}

/// The configuration key of a balancer field named by its validator.
fn balance_key(field: &str) -> String {
    let key = match field {
        "weights.cpu" => "weight_cpu",
        "weights.latency" => "weight_latency",
        "weights.proc_time" => "weight_proc_time",
        "weights.in_flight" => "weight_in_flight",
        "weights" => "weight_*",
        "limits.cpu_max" => "cpu_max",
        "limits.latency_max" => "latency_max",
        "limits.proc_time_max" => "proc_time_max",
        "limits.in_flight_max" => "in_flight_max",
        "limits.associations_max" => "associations_max",
        "thresholds.c" => "threshold_c",
        "thresholds.cpu" => "threshold_cpu",
        "thresholds.latency" => "threshold_latency",
        other => other,
    };
    format!("balance.{key}")
}

/// `[admin]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    pub listen: SocketAddr,
    /// File holding the bearer token ("": none).
    pub token_file: String,
    /// Environment variable holding the bearer token ("": none).
    pub token_env: String,
    /// PEM certificate chain for HTTPS ("": plain HTTP).
    pub tls_cert: String,
    /// PEM private key for HTTPS.
    pub tls_key: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token_file: String::new(),
            token_env: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

impl AdminSection {
    /// Where the bearer token comes from, if one is configured.
    pub fn token_source(&self) -> Option<TokenSource> {
        if !self.token_file.is_empty() {
            Some(TokenSource::File(self.token_file.clone().into()))
        } else if !self.token_env.is_empty() {
            Some(TokenSource::Env(self.token_env.clone()))
        } else {
            None
        }
    }

    /// Certificate and key files, when HTTPS is configured.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        (!self.tls_cert.is_empty() && !self.tls_key.is_empty())
            .then(|| (Path::new(&self.tls_cert), Path::new(&self.tls_key)))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.token_file.is_empty() && !self.token_env.is_empty() {
            return Err(invalid(
                "admin.token_env",
                "set admin.token_file or admin.token_env, not both",
            ));
        }
        if !crate::admin::auth::is_loopback(self.listen.ip()) && self.token_source().is_none() {
            return Err(invalid(
                "admin.listen",
                "a non-loopback address needs a bearer token: set admin.token_file or admin.token_env",
            ));
        }
        match (self.tls_cert.is_empty(), self.tls_key.is_empty()) {
            (false, true) => Err(invalid(
                "admin.tls_key",
                "admin.tls_cert is set: the private key (PEM) is needed too",
            )),
            (true, false) => Err(invalid(
                "admin.tls_cert",
                "admin.tls_key is set: the certificate (PEM) is needed too",
            )),
            _ => Ok(()),
        }
    }
}

/// `[migrate]`: re-homing live associations and the migration planner.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MigrateSection {
    /// Re-home a node whose backend association fails (else close the node too).
    pub rehome_on_failure: bool,
    /// Re-home every association of a backend whose probe turns unhealthy.
    pub rehome_on_unhealthy: bool,
    /// Empty a backend the scaler removes by migrating its associations.
    pub on_scale_in: bool,
    /// After a scale-up while the pool is in Bear, move associations onto the new backend.
    pub rebalance_on_scale_up: bool,
    /// Time the target's xApps have to re-subscribe what the node has.
    #[serde(deserialize_with = "duration")]
    pub handover_timeout: Duration,
    /// Time a released source has to answer what it owes.
    #[serde(deserialize_with = "duration")]
    pub release_timeout: Duration,
    /// Node messages held per association while no backend can take them.
    pub buffer: usize,
    /// Time one move may take before the executor stops waiting for it.
    #[serde(deserialize_with = "duration")]
    pub move_timeout: Duration,
    /// Planner: highest predicted CPU on a backend receiving associations.
    pub cpu_ceiling: f64,
    /// Planner: moves touching one backend per wave.
    pub max_moves_per_backend: usize,
    /// Planner energy model (CORMO-RAN): idle power per active backend, W.
    pub idle_power_w: f64,
    /// Power per light association, W.
    pub light_power_w: f64,
    /// Power per heavy association, W.
    pub heavy_power_w: f64,
    /// An association whose estimated CPU is at least this is heavy.
    pub heavy_cpu: f64,
    /// Energy of one move, W-equivalent over the planning window.
    pub move_cost_w: f64,
}

impl Default for MigrateSection {
    fn default() -> Self {
        let p = PlannerConfig::default();
        MigrateSection {
            rehome_on_failure: true,
            rehome_on_unhealthy: false,
            on_scale_in: true,
            rebalance_on_scale_up: false,
            handover_timeout: Duration::from_secs(5),
            release_timeout: Duration::from_secs(5),
            buffer: 4096,
            move_timeout: Duration::from_secs(15),
            cpu_ceiling: p.cpu_ceiling,
            max_moves_per_backend: p.max_moves_per_backend,
            idle_power_w: p.idle_power_w,
            light_power_w: p.light_power_w,
            heavy_power_w: p.heavy_power_w,
            heavy_cpu: p.heavy_cpu,
            move_cost_w: p.move_cost_w,
        }
    }
}

/// One `[[router.groups]]` entry: nodes served in router mode.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterGroupSection {
    pub name: String,
    /// PLMN identity as sent, 6 hex digits (e.g. "00f110"); absent: any.
    #[serde(default)]
    pub plmn: Option<String>,
    /// gNB-IDs (gNB nodes); empty: any.
    #[serde(default)]
    pub gnb_ids: Vec<u32>,
    /// The backends that must see these nodes, by name.
    #[serde(default)]
    pub pods: Option<Vec<String>>,
    /// Or: this many backends chosen by Bull-and-Bear. Neither: every healthy backend.
    #[serde(default)]
    pub replicas: Option<usize>,
}

/// `[router]`: xApp router mode (one node shared by several RIC pods).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSection {
    /// Node groups; a node no group matches is served in association mode.
    pub groups: Vec<RouterGroupSection>,
    /// Merge identical subscriptions of several pods into one at the node.
    pub merge_identical: bool,
    /// A dead pod's subscriptions: "delete" at the node, or "handover" (held
    /// for a pod whose xApp subscribes alike within `handover_timeout`).
    pub on_pod_failure: PodFailure,
    #[serde(deserialize_with = "duration")]
    pub handover_timeout: Duration,
    /// Node messages held per node while their subscription has no owner.
    pub buffer: usize,
    /// Back-off before a failed pod is tried again, doubling up to `retry_max`.
    #[serde(deserialize_with = "duration")]
    pub retry_min: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_max: Duration,
}

impl Default for RouterSection {
    fn default() -> Self {
        let c = RouterConfig::default();
        RouterSection {
            groups: Vec::new(),
            merge_identical: c.merge_identical,
            on_pod_failure: c.on_pod_failure,
            handover_timeout: c.handover_timeout,
            buffer: c.buffer,
            retry_min: c.retry_min,
            retry_max: c.retry_max,
        }
    }
}

/// 6 hex digits → the 3 PLMN octets.
fn parse_plmn(s: &str) -> Option<[u8; 3]> {
    if s.len() != 6 {
        return None;
    }
    let mut out = [0u8; 3];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
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
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub proxy: ProxySection,
    pub backends: Vec<BackendSection>,
    pub balance: BalanceSection,
    pub probe: ProbeSection,
    pub scale: ScaleSection,
    pub migrate: MigrateSection,
    pub router: RouterSection,
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
        if !(1024..=1 << 30).contains(&p.queue_bytes) {
            return Err(invalid(
                "proxy.queue_bytes",
                "must be between 1024 bytes and 1 GiB (1073741824)",
            ));
        }
        if p.max_associations == 0 {
            return Err(invalid("proxy.max_associations", "must be at least 1"));
        }
        if p.setup_rate_per_backend > 100_000 {
            return Err(invalid(
                "proxy.setup_rate_per_backend",
                "must be at most 100000 setups/s (0 = unpaced)",
            ));
        }
        if !(1..=100_000).contains(&p.setup_burst) {
            return Err(invalid("proxy.setup_burst", "must be between 1 and 100000"));
        }
        if p.setup_wait_max > Duration::from_secs(60) {
            return Err(invalid(
                "proxy.setup_wait_max",
                "must be at most 60s (0s: never wait, answer TimeToWait at once)",
            ));
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
        let discovered = self.scale.enabled && self.scale.actuator == ActuatorKind::Kubernetes;
        if self.backends.is_empty() && !discovered {
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
            for (j, a) in b.secondary_addrs.iter().enumerate() {
                let why = if a.port() != b.addr.port() {
                    "must use the port of addr (one SCTP endpoint)"
                } else if *a == b.addr || b.secondary_addrs[..j].contains(a) {
                    "duplicate address"
                } else {
                    continue;
                };
                return Err(invalid(format!("backends[{i}].secondary_addrs[{j}]"), why));
            }
            if let Some(url) = &b.metrics {
                if Target::with_url(BackendId(0), url).is_err() {
                    return Err(invalid(
                        format!("backends[{i}].metrics"),
                        "must be an http:// URL with a host and port",
                    ));
                }
            }
        }
        self.balance_settings()?;
        self.prober()?;
        let b = &self.balance;
        if b.publish_interval.is_zero() || b.publish_interval > Duration::from_secs(10) {
            return Err(invalid(
                "balance.publish_interval",
                "must be more than 0 and at most 10s",
            ));
        }
        if !(b.latency_ewma > 0.0 && b.latency_ewma <= 1.0) {
            return Err(invalid("balance.latency_ewma", "must be in (0, 1]"));
        }
        if b.latency_window.is_zero() {
            return Err(invalid("balance.latency_window", "must be more than 0"));
        }
        let r = &self.router;
        if r.buffer == 0 {
            return Err(invalid("router.buffer", "must be at least 1"));
        }
        if r.handover_timeout.is_zero() {
            return Err(invalid("router.handover_timeout", "must be more than 0"));
        }
        if r.retry_min.is_zero() || r.retry_max < r.retry_min {
            return Err(invalid(
                "router.retry_min",
                "must be more than 0 and at most router.retry_max",
            ));
        }
        for (i, g) in r.groups.iter().enumerate() {
            let key = |f: &str| format!("router.groups[{i}].{f}");
            if g.name.is_empty() || r.groups[..i].iter().any(|o| o.name == g.name) {
                return Err(invalid(key("name"), "must be set and unique"));
            }
            if g.plmn.as_deref().is_some_and(|p| parse_plmn(p).is_none()) {
                return Err(invalid(
                    key("plmn"),
                    "must be 6 hex digits (e.g. \"00f110\")",
                ));
            }
            if g.pods.is_some() && g.replicas.is_some() {
                return Err(invalid(key("pods"), "give pods or replicas, not both"));
            }
            if g.replicas == Some(0) || g.pods.as_ref().is_some_and(|p| p.is_empty()) {
                return Err(invalid(key("pods"), "must name at least one pod"));
            }
            for name in g.pods.iter().flatten() {
                if !self.backends.iter().any(|b| &b.name == name) && !self.scale.enabled {
                    return Err(invalid(
                        key("pods"),
                        "names a backend that is not configured",
                    ));
                }
            }
        }
        let mg = &self.migrate;
        if mg.buffer == 0 {
            return Err(invalid("migrate.buffer", "must be at least 1"));
        }
        for (key, d) in [
            ("migrate.handover_timeout", mg.handover_timeout),
            ("migrate.release_timeout", mg.release_timeout),
            ("migrate.move_timeout", mg.move_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be more than 0"));
            }
        }
        self.executor().planner.check().map_err(|e| {
            let field = e.split_whitespace().next().unwrap_or_default();
            invalid(
                format!("migrate.{field}"),
                "out of range (a ceiling in (0, 1], at least one move, finite non-negative powers)",
            )
        })?;
        self.scale_settings()?;
        let sc = &self.scale;
        if sc.tick.is_zero() || sc.tick > Duration::from_secs(3600) {
            return Err(invalid("scale.tick", "must be more than 0 and at most 1h"));
        }
        if sc.retry_min.is_zero() || sc.retry_max < sc.retry_min {
            return Err(invalid(
                "scale.retry_min",
                "must be > 0 and <= scale.retry_max",
            ));
        }
        if sc.actuator == ActuatorKind::Kubernetes {
            match &sc.kubernetes {
                None => {
                    return Err(invalid(
                        "scale.kubernetes",
                        "actuator = \"kubernetes\" needs a [scale.kubernetes] section",
                    ))
                }
                Some(k) => {
                    if let Err(e) = k.validate() {
                        return Err(ConfigError::Invalid {
                            key: "scale.kubernetes".into(),
                            reason: Box::leak(e.into_boxed_str()),
                        });
                    }
                }
            }
        }
        self.leader()?;
        if sc.exec.start.is_empty() {
            return Err(invalid("scale.exec.start", "the command must not be empty"));
        }
        for (i, b) in sc.standby.iter().enumerate() {
            if !b.secondary_addrs.is_empty() {
                return Err(invalid(
                    format!("scale.standby[{i}].secondary_addrs"),
                    "not supported for standby backends (only for [[backends]])",
                ));
            }
            if self
                .backends
                .iter()
                .chain(&sc.standby[..i])
                .any(|o| o.name == b.name)
            {
                return Err(invalid(
                    format!("scale.standby[{i}].name"),
                    "duplicate backend name",
                ));
            }
        }
        if self.probe.metrics_port == 0 {
            return Err(invalid("probe.metrics_port", "must not be 0"));
        }
        if !self.probe.metrics_path.starts_with('/') {
            return Err(invalid("probe.metrics_path", "must start with '/'"));
        }
        self.admin.validate()
    }

    /// The Bull-and-Bear settings, validated (errors name the `[balance]` key).
    pub fn balance_settings(&self) -> Result<BalanceSettings, ConfigError> {
        let b = &self.balance;
        let model = LoadModel {
            weights: Weights {
                cpu: b.weight_cpu,
                latency: b.weight_latency,
                proc_time: b.weight_proc_time,
                in_flight: b.weight_in_flight,
            },
            limits: Limits {
                cpu_max: b.cpu_max,
                latency_max: b.latency_max,
                proc_time_max: b.proc_time_max,
                in_flight_max: b.in_flight_max,
                associations_max: b.associations_max,
            },
            thresholds: Thresholds {
                c: b.threshold_c,
                cpu: b.threshold_cpu,
                latency: b.threshold_latency,
            },
            max_age: b.max_age,
            latency_max_age: b.latency_max_age,
        };
        let bnb = BnbConfig {
            exit_c: b.exit_c,
            exit_cpu: b.exit_cpu,
            exit_latency: b.exit_latency,
            hold: b.hold,
            settle: b.settle,
        };
        if let Err(e) = crate::balance::bnb::Balancer::new(model, bnb) {
            let (field, bound) = match e {
                InvalidBnb::Model(m) => (m.field, m.bound),
                InvalidBnb::Config { field, bound } => (field, bound),
            };
            return Err(invalid(balance_key(field), bound));
        }
        Ok(BalanceSettings {
            model,
            bnb,
            publish_interval: b.publish_interval,
            decisions: b.decisions,
            unhealthy_after: self.probe.unhealthy_after,
        })
    }

    /// The scaler's settings, validated (errors name the `[scale]` key).
    pub fn scale_settings(&self) -> Result<ScaleSettings, ConfigError> {
        let s = &self.scale;
        let policy = ScalerConfig {
            min_replicas: s.min_replicas,
            max_replicas: s.max_replicas,
            up_cpu: s.up_cpu,
            up_c: s.up_c,
            down_cpu: s.down_cpu,
            down_for: s.down_for,
            up_cooldown: s.up_cooldown,
            down_cooldown: s.down_cooldown,
            max_step: s.max_step,
            latency_max: self.balance.latency_max,
            grace: s.grace,
            room_cpu: s.room_cpu,
            pid: PidConfig {
                kp: s.pid_kp,
                ki: s.pid_ki,
                kd: s.pid_kd,
                integral_limit: s.pid_integral_limit,
                output_limit: s.pid_output_limit,
                ..PidConfig::default()
            },
        };
        if let Err(e) = policy.validate() {
            let key = match e.field {
                "latency_max" => "balance.latency_max".to_owned(),
                f => format!("scale.{}", f.replace("pid.", "pid_")),
            };
            return Err(invalid(key, e.bound));
        }
        Ok(ScaleSettings {
            policy,
            tick: s.tick,
            start_timeout: s.start_timeout,
            retry_min: s.retry_min,
            retry_max: s.retry_max,
            records: s.records,
            default_metrics: self
                .probe
                .enabled
                .then(|| (self.probe.metrics_port, self.probe.metrics_path.clone())),
        })
    }

    /// Leader election settings; `None` without etcd endpoints (always lead).
    pub fn leader(&self) -> Result<Option<crate::leader::LeaderConfig>, ConfigError> {
        let l = &self.scale.leader;
        if l.etcd.is_empty() {
            return Ok(None);
        }
        let id = if l.id.is_empty() {
            crate::leader::LeaderConfig::default_id()
        } else {
            l.id.clone()
        };
        let cfg = crate::leader::LeaderConfig::new(l.etcd.clone(), l.key.clone(), id)
            .with_lease_ttl(l.lease_ttl);
        cfg.validate().map_err(|e| ConfigError::Invalid {
            key: "scale.leader".into(),
            reason: Box::leak(e.to_string().into_boxed_str()),
        })?;
        Ok(Some(cfg))
    }

    /// The configured backends as an actuator sees them.
    pub fn provisioned(&self) -> Vec<Provisioned> {
        self.as_provisioned(&self.backends)
    }

    /// `[[scale.standby]]` as the static actuator sees them.
    pub fn standby(&self) -> Vec<Provisioned> {
        self.as_provisioned(&self.scale.standby)
    }

    fn as_provisioned(&self, list: &[BackendSection]) -> Vec<Provisioned> {
        list.iter()
            .map(|b| Provisioned {
                name: b.name.clone(),
                addr: b.addr,
                metrics: self.metrics_url(b),
            })
            .collect()
    }

    /// `[scale.exec]` with the probe's metrics port.
    pub fn exec(&self) -> ExecConfig {
        let e = &self.scale.exec;
        ExecConfig {
            start: e.start.clone(),
            addresses: e.addresses.clone(),
            name_prefix: e.name_prefix.clone(),
            metrics_port: self.probe.enabled.then_some(self.probe.metrics_port),
            metrics_path: self.probe.metrics_path.clone(),
            stop_timeout: e.stop_timeout,
            ready_timeout: e.ready_timeout,
            restart: e.restart,
            restart_backoff: e.restart_backoff,
            log_dir: (!e.log_dir.is_empty()).then(|| e.log_dir.clone().into()),
        }
    }

    /// How measured latency is summarised.
    pub fn latency(&self) -> LatencyConfig {
        LatencyConfig {
            alpha: self.balance.latency_ewma,
            window: self.balance.latency_window,
            min_samples: self.balance.latency_min_samples,
        }
    }

    /// The prober (`None` when `[probe] enabled = false`), validated.
    pub fn prober(&self) -> Result<Option<Prober>, ConfigError> {
        let p = &self.probe;
        if !p.enabled {
            return Ok(None);
        }
        let cfg = ProbeConfig {
            metrics: MetricNames {
                cpu: nonempty(&p.cpu),
                proc_time: nonempty(&p.proc_time),
                latency: nonempty(&p.latency),
            },
            tick: p.tick,
            timeout: p.timeout,
            unhealthy_after: p.unhealthy_after,
            max_age: self.balance.max_age,
            max_body: p.max_body,
        };
        let source = match p.source {
            ProbeSource::Exposition => Source::Exposition,
            ProbeSource::Promql => Source::Promql(PromqlConfig {
                base_url: p.promql.url.clone(),
                cpu: nonempty(&p.promql.cpu),
                proc_time: nonempty(&p.promql.proc_time),
                latency: nonempty(&p.promql.latency),
                label: p.promql.label.clone(),
                value_template: p.promql.value.clone(),
            }),
        };
        Prober::new(cfg, source).map(Some).map_err(|e| {
            let key = match e.field {
                "max_age" => "balance.max_age".to_owned(),
                f => format!("probe.{}", f.strip_prefix("metrics.").unwrap_or(f)),
            };
            invalid(key, e.bound)
        })
    }

    /// The metrics URL probed for backend `b` (None when probing is off).
    pub fn metrics_url(&self, b: &BackendSection) -> Option<String> {
        if !self.probe.enabled {
            return None;
        }
        Some(b.metrics.clone().unwrap_or_else(|| {
            crate::probe::http::metrics_url(
                b.addr.ip(),
                self.probe.metrics_port,
                &self.probe.metrics_path,
            )
        }))
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

    /// The migration executor and planner.
    pub fn executor(&self) -> ExecutorConfig {
        let m = &self.migrate;
        ExecutorConfig {
            planner: PlannerConfig {
                cpu_ceiling: m.cpu_ceiling,
                max_moves_per_backend: m.max_moves_per_backend,
                idle_power_w: m.idle_power_w,
                light_power_w: m.light_power_w,
                heavy_power_w: m.heavy_power_w,
                heavy_cpu: m.heavy_cpu,
                move_cost_w: m.move_cost_w,
            },
            move_timeout: m.move_timeout,
            rehome_on_unhealthy: m.rehome_on_unhealthy,
            ..ExecutorConfig::default()
        }
    }

    /// Re-homing knobs of every session.
    pub fn rehome(&self) -> RehomeConfig {
        let m = &self.migrate;
        RehomeConfig {
            on_backend_failure: m.rehome_on_failure,
            handover_timeout: m.handover_timeout,
            release_timeout: m.release_timeout,
            buffer: m.buffer,
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
                rehome: self.rehome(),
            },
            queue: p.queue,
            queue_bytes: p.queue_bytes,
            connect_timeout: p.connect_timeout,
            drain_timeout: p.drain_timeout,
            first_message_timeout: p.first_message_timeout,
            max_associations: p.max_associations,
            allow: p.allow.clone(),
            setup_pace: Pace {
                rate: f64::from(p.setup_rate_per_backend),
                burst: p.setup_burst,
            },
            setup_wait_max: p.setup_wait_max,
            router: std::sync::Arc::new(self.router_settings()),
        }
    }

    /// Router mode: the node groups and the per-node knobs.
    pub fn router_settings(&self) -> RouterSettings {
        let r = &self.router;
        RouterSettings {
            groups: r
                .groups
                .iter()
                .map(|g| NodeGroup {
                    name: g.name.clone(),
                    plmn: g.plmn.as_deref().and_then(parse_plmn),
                    gnb_ids: g.gnb_ids.clone(),
                    pods: match (&g.pods, g.replicas) {
                        (Some(names), _) => PodChoice::Named(names.clone()),
                        (None, Some(k)) => PodChoice::Replicas(k),
                        (None, None) => PodChoice::AllHealthy,
                    },
                })
                .collect(),
            config: RouterConfig {
                setup_timeout: self.proxy.setup_timeout,
                request_timeout: self.proxy.request_timeout,
                retry_after: TimeToWait::from_duration(self.proxy.retry_after)
                    .unwrap_or(TimeToWait::V10s),
                merge_identical: r.merge_identical,
                on_pod_failure: r.on_pod_failure,
                handover_timeout: r.handover_timeout,
                buffer: r.buffer,
                retry_min: r.retry_min,
                retry_max: r.retry_max,
            },
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
                secondary_addrs: b.secondary_addrs.clone(),
                metrics: self.metrics_url(b),
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
        assert_eq!(c.balance, BalanceSection::default());
        assert_eq!(c.probe, ProbeSection::default());
        // The one deliberate difference: the embedded default runs the scaler.
        assert_eq!(
            c.scale,
            ScaleSection {
                enabled: true,
                ..ScaleSection::default()
            }
        );
        assert!(
            !Config::parse("[[backends]]\nname='a'\naddr='127.0.0.1:1'\n")
                .unwrap()
                .scale
                .enabled
        );
        assert_eq!(c.backends.len(), 3);
        assert_eq!(
            c.backends()[1].metrics.as_deref(),
            Some("http://127.0.1.2:8080/metrics")
        );
        assert!(c.prober().unwrap().is_some());
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
        // A multi-homed backend: its further addresses, on the same port.
        let c = Config::parse(&format!(
            "{base}secondary_addrs = ['127.0.0.2:36421', '[::1]:36421']\n"
        ))
        .unwrap();
        assert_eq!(
            c.backends()[0].addrs(),
            ["127.0.0.1:36421", "127.0.0.2:36421", "[::1]:36421"]
                .map(|a| a.parse::<SocketAddr>().unwrap())
        );
        for (extra, why) in [
            (
                "['127.0.0.2:1']",
                "`backends[0].secondary_addrs[0]`: must use the port of addr",
            ),
            (
                "['127.0.0.1:36421']",
                "`backends[0].secondary_addrs[0]`: duplicate address",
            ),
            (
                "['127.0.0.2:36421', '127.0.0.2:36421']",
                "`backends[0].secondary_addrs[1]`: duplicate address",
            ),
        ] {
            let e = Config::parse(&format!("{base}secondary_addrs = {extra}\n")).unwrap_err();
            assert!(e.to_string().contains(why), "{extra}: {e}");
        }
        let e = Config::parse(&format!(
            "{base}[[scale.standby]]\nname='s'\naddr='127.0.0.9:36421'\nsecondary_addrs=['127.0.0.8:36421']\n"
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("scale.standby[0].secondary_addrs"),
            "{e}"
        );
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

    #[test]
    fn overload_options() {
        let base = "[[backends]]\nname='a'\naddr='127.0.0.1:36421'\n";
        let c = Config::parse(&format!(
            "[proxy]\nqueue_bytes = 65536\nsetup_rate_per_backend = 20\nsetup_burst = 5\nsetup_wait_max = '250ms'\n{base}"
        ))
        .unwrap();
        let p = c.proxy();
        assert_eq!(p.queue_bytes, 65536);
        assert_eq!(
            p.setup_pace,
            Pace {
                rate: 20.0,
                burst: 5
            }
        );
        assert_eq!(p.setup_wait_max, Duration::from_millis(250));
        // 0 = unpaced; 0s = never wait.
        let c = Config::parse(&format!(
            "[proxy]\nsetup_rate_per_backend = 0\nsetup_wait_max = '0s'\n{base}"
        ))
        .unwrap();
        assert!(c.proxy().setup_pace.is_unpaced());
        // The embedded default equals the built-in one.
        let d = Config::embedded().unwrap().proxy();
        let b = ProxyConfig::default();
        assert_eq!(
            (
                d.queue,
                d.queue_bytes,
                d.setup_pace,
                d.setup_wait_max,
                d.max_associations
            ),
            (
                b.queue,
                b.queue_bytes,
                b.setup_pace,
                b.setup_wait_max,
                b.max_associations
            )
        );
        for (bad, key) in [
            ("queue_bytes = 10", "proxy.queue_bytes"),
            ("setup_burst = 0", "proxy.setup_burst"),
            (
                "setup_rate_per_backend = 1000000",
                "proxy.setup_rate_per_backend",
            ),
            ("setup_wait_max = '2m'", "proxy.setup_wait_max"),
        ] {
            let e = Config::parse(&format!("[proxy]\n{bad}\n{base}")).unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn balance_and_probe_keys_are_named() {
        let base = "[[backends]]\nname='a'\naddr='127.0.0.1:36421'\n";
        for (section, bad, key) in [
            ("balance", "weight_cpu = -1.0", "balance.weight_cpu"),
            ("balance", "threshold_c = 1.5", "balance.threshold_c"),
            ("balance", "latency_max = '0s'", "balance.latency_max"),
            ("balance", "exit_c = 0.9", "balance.exit_c"),
            ("balance", "max_age = '100ms'", "balance.max_age"),
            ("balance", "latency_ewma = 0.0", "balance.latency_ewma"),
            (
                "balance",
                "publish_interval = '0s'",
                "balance.publish_interval",
            ),
            ("probe", "timeout = '5s'", "probe.timeout"),
            ("probe", "cpu = 'bad name'", "probe.cpu"),
            ("probe", "unhealthy_after = 0", "probe.unhealthy_after"),
            ("probe", "metrics_path = 'metrics'", "probe.metrics_path"),
            (
                "probe",
                "source = 'promql'\n[probe.promql]\nurl = 'ftp://x'",
                "probe.promql.base_url",
            ),
            ("scale", "min_replicas = 0", "scale.min_replicas"),
            ("scale", "max_replicas = 0", "scale.max_replicas"),
            ("scale", "up_cpu = 2.0", "scale.up_cpu"),
            ("scale", "pid_kp = -1.0", "scale.pid_kp"),
            ("scale", "tick = '0s'", "scale.tick"),
            ("scale", "actuator = 'magic'", "actuator"),
            ("scale", "exec = { start = [] }", "scale.exec.start"),
            ("migrate", "buffer = 0", "migrate.buffer"),
            ("migrate", "cpu_ceiling = 1.5", "cpu_ceiling"),
            (
                "migrate",
                "max_moves_per_backend = 0",
                "max_moves_per_backend",
            ),
            (
                "migrate",
                "handover_timeout = '0s'",
                "migrate.handover_timeout",
            ),
        ] {
            let e = Config::parse(&format!("[{section}]\n{bad}\n{base}")).unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
        let e = Config::parse("[[backends]]\nname='a'\naddr='127.0.0.1:36421'\nmetrics='nope'\n")
            .unwrap_err();
        assert!(e.to_string().contains("backends[0].metrics"), "{e}");
    }

    #[test]
    fn metrics_urls() {
        let c = Config::parse(
            "[probe]\nmetrics_port = 9100\n[[backends]]\nname='a'\naddr='[::1]:36421'\n\
             [[backends]]\nname='b'\naddr='127.0.0.1:36422'\nmetrics='http://10.0.0.1:1/m'\n",
        )
        .unwrap();
        let b = c.backends();
        assert_eq!(b[0].metrics.as_deref(), Some("http://[::1]:9100/metrics"));
        assert_eq!(b[1].metrics.as_deref(), Some("http://10.0.0.1:1/m"));
        let c =
            Config::parse("[probe]\nenabled = false\n[[backends]]\nname='a'\naddr='127.0.0.1:1'\n")
                .unwrap();
        assert_eq!(c.backends()[0].metrics, None);
        assert!(c.prober().unwrap().is_none());
    }

    #[test]
    fn router_groups_parse_and_bad_ones_are_named() {
        let base = "[[backends]]\nname='a'\naddr='127.0.0.1:36421'\n\
                    [[backends]]\nname='b'\naddr='127.0.0.1:36422'\n";
        let c = Config::parse(&format!(
            "{base}[router]\non_pod_failure = 'handover'\nretry_min = '1s'\n\
             [[router.groups]]\nname = 'cells'\nplmn = '00f110'\ngnb_ids = [7]\npods = ['a', 'b']\n\
             [[router.groups]]\nname = 'rest'\nreplicas = 2\n\
             [[router.groups]]\nname = 'all'\n"
        ))
        .unwrap();
        let r = c.router_settings();
        assert_eq!(r.config.on_pod_failure, PodFailure::Handover);
        assert_eq!(r.config.retry_min, Duration::from_secs(1));
        assert_eq!(r.groups[0].plmn, Some([0x00, 0xf1, 0x10]));
        assert_eq!(r.groups[0].gnb_ids, [7]);
        assert_eq!(
            r.groups[0].pods,
            PodChoice::Named(vec!["a".into(), "b".into()])
        );
        assert_eq!(r.groups[1].pods, PodChoice::Replicas(2));
        assert_eq!(r.groups[2].pods, PodChoice::AllHealthy);
        assert_eq!(c.proxy().router.groups.len(), 3);
        // The embedded default has no group: every node in association mode.
        assert!(Config::embedded()
            .unwrap()
            .router_settings()
            .groups
            .is_empty());
        for (bad, key) in [
            (
                "[[router.groups]]\nname = 'x'\nplmn = '00f1'",
                "router.groups[0].plmn",
            ),
            (
                "[[router.groups]]\nname = 'x'\npods = ['a']\nreplicas = 1",
                "router.groups[0].pods",
            ),
            (
                "[[router.groups]]\nname = 'x'\npods = ['nope']",
                "router.groups[0].pods",
            ),
            (
                "[[router.groups]]\nname = 'x'\nreplicas = 0",
                "router.groups[0].pods",
            ),
            (
                "[[router.groups]]\nname = 'x'\n[[router.groups]]\nname = 'x'",
                "router.groups[1].name",
            ),
            ("[router]\nbuffer = 0", "router.buffer"),
            (
                "[router]\nretry_min = '5s'\nretry_max = '1s'",
                "router.retry_min",
            ),
            ("[router]\non_pod_failure = 'shrug'", "on_pod_failure"),
        ] {
            let e = Config::parse(&format!("{base}{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn admin_security_and_allow_list_keys_are_named() {
        let base = "[[backends]]\nname='a'\naddr='127.0.0.1:36421'\n";
        let parse = |admin: &str| Config::parse(&format!("[admin]\n{admin}\n{base}"));
        // Loopback binds need no token; anything else does.
        for ok in [
            "listen = '127.0.0.1:9090'",
            "listen = '127.3.0.1:9090'",
            "listen = '[::1]:9090'",
            "listen = '0.0.0.0:9090'\ntoken_env = 'E2LB_ADMIN_TOKEN'",
            "listen = '[::]:9090'\ntoken_file = '/run/secrets/e2lb'",
            "tls_cert = 'c.pem'\ntls_key = 'k.pem'",
        ] {
            assert!(parse(ok).is_ok(), "{ok}: {:?}", parse(ok).err());
        }
        for (bad, key, why) in [
            ("listen = '0.0.0.0:9090'", "admin.listen", "bearer token"),
            ("listen = '[::]:9090'", "admin.listen", "bearer token"),
            ("listen = '10.1.2.3:9090'", "admin.listen", "bearer token"),
            (
                "token_file = 'f'\ntoken_env = 'E'",
                "admin.token_env",
                "not both",
            ),
            ("tls_cert = 'c.pem'", "admin.tls_key", "private key"),
            ("tls_key = 'k.pem'", "admin.tls_cert", "certificate"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{key}`")) && e.contains(why),
                "{bad}: {e}"
            );
        }
        let c =
            parse("listen = '0.0.0.0:1'\ntoken_env = 'X'\ntls_cert = 'c'\ntls_key = 'k'").unwrap();
        assert_eq!(c.admin.token_source(), Some(TokenSource::Env("X".into())));
        assert_eq!(c.admin.tls_files(), Some((Path::new("c"), Path::new("k"))));
        assert_eq!(Config::embedded().unwrap().admin.token_source(), None);

        let c = Config::parse(&format!(
            "[proxy]\nallow = ['10.0.0.0/8', '::1/128', '192.0.2.1']\n{base}"
        ))
        .unwrap();
        assert_eq!(c.proxy().allow.nets().len(), 3);
        assert!(c.proxy().allow.permits("10.9.9.9".parse().unwrap()));
        assert!(!c.proxy().allow.permits("192.0.2.2".parse().unwrap()));
        assert!(Config::embedded().unwrap().proxy().allow.is_any());
        let e = Config::parse(&format!(
            "[proxy]\nallow = ['10.0.0.0/8', '10.0.0.0/40']\n{base}"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("allow[1]") && e.contains("10.0.0.0/40"), "{e}");
    }
}
