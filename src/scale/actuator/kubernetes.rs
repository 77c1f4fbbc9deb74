//! The Kubernetes actuator: RIC pods are the replicas of one Deployment or
//! StatefulSet, and the pods behind one Service are the backends.
//!
//! # How the pieces map to the API
//!
//! | contract | request | why |
//! | --- | --- | --- |
//! | [`Actuator::apply`]: how many | `PATCH /apis/apps/v1/namespaces/{ns}/{deployments\|statefulsets}/{name}/scale`, merge patch `{"spec":{"replicas":N}}` | the `scale` subresource is what `kubectl scale` and the HPA use: it needs only `patch` on `…/scale`, not on the whole workload, and leaves the pod template alone |
//! | [`Actuator::apply`]: which go (StatefulSet) | none: checked locally | a StatefulSet always removes its highest ordinals (`ric-4`, then `ric-3`, …), whatever is asked; a removal it would not make is refused with [`ActuatorError::Limit`] (see below) |
//! | [`Actuator::apply`]: which go (Deployment) | `GET …/deployments/{name}/scale`, then `PATCH /api/v1/namespaces/{ns}/pods/{pod}` with the annotation `controller.kubernetes.io/pod-deletion-cost: "-1000"`, then the scale `PATCH` | the ReplicaSet controller, on scale-down, removes the pods with the lowest deletion cost first, so the drained pods the scaler chose are the ones that go |
//! | [`Actuator::discover`] | `GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector=kubernetes.io/service-name={service}` | EndpointSlices are what kube-proxy and every load balancer read: the pod IPs, readiness and named ports, in one list, without `get` on pods |
//!
//! ## StatefulSet: the ordinal rule
//!
//! A StatefulSet's pods are `{name}-0` … `{name}-{replicas-1}`; scaling it to
//! `desired` removes exactly the ordinals `desired` and above (`OrderedReady`
//! one at a time, `Parallel` at once). So a removal is accepted only if its
//! ordinal is at least `desired`; `ric-1` with `desired = 3` is refused with
//! [`ActuatorError::Limit`] and no request is made, so the caller learns to
//! pick the highest ordinals: [`highest_ordinal_first`] orders backends that
//! way (and [`KubernetesActuator::removal_order`] does it for the configured
//! workload). Because the check depends only on `desired`, the same call
//! repeated after it succeeded is accepted again (idempotent). Assumes
//! `spec.ordinals.start` is 0 (the default).
//!
//! ## Deployment: pod-deletion-cost
//!
//! A Deployment's pods have random names and the ReplicaSet chooses which to
//! delete on scale-down. The `controller.kubernetes.io/pod-deletion-cost`
//! annotation (beta, on by default since Kubernetes 1.22) ranks pods: lower
//! cost goes first. The chosen pods are annotated with `-1000` *before* the
//! scale `PATCH`, so the ReplicaSet sees the cost when it picks. It is best
//! effort on the cluster's side: the ReplicaSet still prefers unscheduled,
//! pending and not-ready pods, and during a rollout (two ReplicaSets) the
//! Deployment splits the scale-down between them.
//!
//! A Deployment removes pods only by scaling down, so the removals still
//! alive must fit into `current - desired` (current: `spec.replicas` of the
//! scale subresource); otherwise [`ActuatorError::Limit`] and the annotation
//! is taken off again. A removal whose pod is already gone (`404` on the
//! annotation) or terminating (`metadata.deletionTimestamp`) does not count,
//! so retrying a call that already succeeded succeeds again.
//!
//! ## Discovery
//!
//! Each EndpointSlice of the Service carries a port list and endpoints. An
//! endpoint is a backend when `conditions.ready` is not `false` (unset means
//! ready) and it is not `terminating`; its name is `targetRef.name` (the
//! pod), its E2 address the first address with the slice's port named
//! [`KubernetesConfig::e2_port`] (the port's protocol should be SCTP; it is not
//! checked), and its metrics URL `http://{address}:{metrics port}{path}` when
//! [`KubernetesConfig::metrics_port`] is set. IPv4 and IPv6 slices are read
//! alike (`http://[fd00::5]:8080/metrics`); FQDN slices are skipped. A
//! dual-stack Service has one slice per family listing the same pods: a pod
//! is reported once, with its IPv4 address unless
//! [`KubernetesConfig::ip_family`] asks for IPv6. An endpoint in two slices
//! of one family (a transient state while slices are rebalanced) is also
//! reported once.
//!
//! ## Errors
//!
//! An API error (a `Status` object with 4xx/5xx) becomes
//! [`ActuatorError::Failed`] with the request, the code, the reason and the
//! server's message (e.g. `403 Forbidden: … cannot patch resource
//! "statefulsets/scale" …`: the Role is missing a verb); a transport error
//! (connection refused, TLS, timeout) likewise with its cause chain.
//!
//! ## Permissions
//!
//! `docker/k8s/base/rbac.yaml`: `get`/`patch` on `deployments/scale` and
//! `statefulsets/scale`, `patch` on `pods`, `get`/`list`/`watch` on
//! `endpointslices`, in the one namespace.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::{Actuator, ActuatorError, Provisioned};

/// The actuator's name ([`Actuator::kind`], logs, metrics).
pub const KIND: &str = "kubernetes";
/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Annotation the ReplicaSet controller ranks pods by on scale-down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// The deletion cost given to the pods chosen for removal.
pub const REMOVAL_COST: &str = "-1000";
/// Read/write timeout of the client built by [`KubernetesActuator::connect`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Which workload owns the RIC pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum WorkloadKind {
    /// Pods of a Deployment: removals chosen by pod-deletion-cost.
    Deployment,
    /// Pods of a StatefulSet: removals are the highest ordinals.
    StatefulSet,
}

impl WorkloadKind {
    /// The resource name in API paths (`deployments`, `statefulsets`).
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
        }
    }
}

/// Address family of the EndpointSlices to read (`addressType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum IpFamily {
    /// `addressType: IPv4`.
    IPv4,
    /// `addressType: IPv6`.
    IPv6,
}

impl IpFamily {
    fn address_type(self) -> &'static str {
        match self {
            IpFamily::IPv4 => "IPv4",
            IpFamily::IPv6 => "IPv6",
        }
    }
}

/// What the actuator acts on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Namespace of the workload, the Service and the pods; `None`: the
    /// client's (the service account's namespace in a pod, the kubeconfig
    /// context's namespace outside).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `Deployment` or `StatefulSet`.
    pub workload_kind: WorkloadKind,
    /// Name of the Deployment or StatefulSet.
    pub workload: String,
    /// Name of the Service whose EndpointSlices list the RIC pods.
    pub service: String,
    /// Name of the E2 (SCTP) port in the Service (`""`: the Service's single
    /// unnamed port).
    #[serde(default = "default_e2_port")]
    pub e2_port: String,
    /// Name of the metrics port; `None`: the pool's default metrics URL.
    #[serde(default)]
    pub metrics_port: Option<String>,
    /// Path of the metrics URL.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// Read only the slices of this family; `None`: both, and a pod listed
    /// in both (a dual-stack Service) is reported with its IPv4 address.
    #[serde(default)]
    pub ip_family: Option<IpFamily>,
}

fn default_e2_port() -> String {
    "e2".to_owned()
}

fn default_metrics_path() -> String {
    "/metrics".to_owned()
}

impl KubernetesConfig {
    /// A configuration with the default port names (`e2`, no metrics port).
    pub fn new(
        workload_kind: WorkloadKind,
        workload: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        KubernetesConfig {
            namespace: None,
            workload_kind,
            workload: workload.into(),
            service: service.into(),
            e2_port: default_e2_port(),
            metrics_port: None,
            metrics_path: default_metrics_path(),
            ip_family: None,
        }
    }

    /// Checks the names; the message says which is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.namespace.as_deref() == Some("") {
            return Err("kubernetes: namespace is empty (omit it for the client's)".into());
        }
        if self.workload.is_empty() {
            return Err("kubernetes: workload (Deployment or StatefulSet name) is empty".into());
        }
        if self.service.is_empty() {
            return Err("kubernetes: service is empty".into());
        }
        if !self.metrics_path.starts_with('/') {
            return Err(format!(
                "kubernetes: metrics_path {:?} must start with '/'",
                self.metrics_path
            ));
        }
        Ok(())
    }
}

/// The ordinal of a StatefulSet's pod (`ric-3` of `ric` → 3), `None` for a
/// name that is not `{statefulset}-{ordinal}`.
pub fn statefulset_ordinal(statefulset: &str, pod: &str) -> Option<u32> {
    let digits = pod.strip_prefix(statefulset)?.strip_prefix('-')?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// The backends in the order a StatefulSet removes them: highest ordinal
/// first; names that are not the StatefulSet's pods last, by name. The
/// scaler takes its removals from the front.
pub fn highest_ordinal_first(statefulset: &str, backends: &[Provisioned]) -> Vec<Provisioned> {
    let mut out = backends.to_vec();
    out.sort_by(|a, b| {
        let (oa, ob) = (
            statefulset_ordinal(statefulset, &a.name),
            statefulset_ordinal(statefulset, &b.name),
        );
        // Some(_) before None, higher ordinal first, then by name.
        ob.cmp(&oa)
            .then_with(|| oa.is_none().cmp(&ob.is_none()))
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// The backends an EndpointSlice list describes (see the module doc), by
/// name.
pub fn provisioned_from_slices(
    config: &KubernetesConfig,
    slices: &[EndpointSlice],
) -> Vec<Provisioned> {
    let families = match config.ip_family {
        Some(family) => vec![family],
        None => vec![IpFamily::IPv4, IpFamily::IPv6],
    };
    // Family by family, so that a dual-stack pod keeps its IPv4 address
    // whatever the order of the slices.
    let slices = families.into_iter().flat_map(|family| {
        slices
            .iter()
            .filter(move |s| s.address_type == family.address_type())
    });
    let mut found: BTreeMap<String, Provisioned> = BTreeMap::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port_named = |want: &str| {
            ports
                .iter()
                .find(|p| p.name.as_deref().unwrap_or("") == want)
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0)
        };
        let Some(e2_port) = port_named(&config.e2_port) else {
            continue;
        };
        let metrics_port = config.metrics_port.as_deref().and_then(port_named);
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready) != Some(false);
            let terminating = conditions.and_then(|c| c.terminating) == Some(true);
            if !ready || terminating {
                continue;
            }
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let addr = SocketAddr::new(ip, e2_port);
            let name = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod"))
                .and_then(|r| r.name.clone())
                .or_else(|| endpoint.hostname.clone())
                .unwrap_or_else(|| addr.to_string());
            let metrics = metrics_port
                .map(|p| format!("http://{}{}", SocketAddr::new(ip, p), config.metrics_path));
            found.entry(name.clone()).or_insert(Provisioned {
                name,
                addr,
                metrics,
            });
        }
    }
    found.into_values().collect()
}

/// Scales a Deployment or StatefulSet and reads its pods from the Service's
/// EndpointSlices. See the module doc.
#[derive(Clone)]
pub struct KubernetesActuator {
    config: KubernetesConfig,
    namespace: String,
    client: kube::Client,
}

impl std::fmt::Debug for KubernetesActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesActuator")
            .field("config", &self.config)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// What annotating a pod for removal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PodState {
    /// The pod runs: the scale-down has to remove it.
    Live,
    /// Already terminating or gone.
    Leaving,
}

fn failed(message: String) -> ActuatorError {
    ActuatorError::Failed {
        actuator: KIND,
        message,
    }
}

fn limit(message: String) -> ActuatorError {
    ActuatorError::Limit {
        actuator: KIND,
        message,
    }
}

/// `request: 403 Forbidden: message` for an API status, the cause chain for
/// anything else.
fn api_error(request: &str, err: &kube::Error) -> ActuatorError {
    match err {
        kube::Error::Api(status) => {
            let canonical = hyper::StatusCode::from_u16(status.code)
                .ok()
                .and_then(|c| c.canonical_reason())
                .unwrap_or("");
            // kube fills in this reason when the body was not a Status object
            // (a proxy's or load balancer's error page).
            let reason = match status.reason.as_str() {
                "" => canonical.to_owned(),
                "Failed to parse error data" => format!("{canonical} (not a Status object)"),
                reason => reason.to_owned(),
            };
            failed(format!(
                "{request}: {} {reason}: {}",
                status.code, status.message
            ))
        }
        other => {
            let mut message = format!("{request}: {other}");
            let mut source = other.source();
            while let Some(s) = source {
                let text = s.to_string();
                if !message.ends_with(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = s.source();
            }
            failed(message)
        }
    }
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

fn client_error(what: &str, err: impl std::fmt::Display) -> ActuatorError {
    failed(format!("{what}: {err}"))
}

impl KubernetesActuator {
    /// In a pod: the service account; elsewhere: `KUBECONFIG` or
    /// `~/.kube/config` (what `kube::Client::try_default` infers), with
    /// [`REQUEST_TIMEOUT`] for reads and writes. Call within a Tokio runtime.
    pub async fn connect(config: KubernetesConfig) -> Result<Self, ActuatorError> {
        let mut kube_config = kube::Config::infer()
            .await
            .map_err(|e| client_error("no Kubernetes client configuration", e))?;
        kube_config.read_timeout = Some(REQUEST_TIMEOUT);
        kube_config.write_timeout = Some(REQUEST_TIMEOUT);
        Self::with_kube_config(config, kube_config)
    }

    /// With an explicit client configuration (cluster URL, credentials,
    /// timeouts), e.g. `kube::Config::new("https://10.0.0.1:6443".parse()?)`.
    /// Call within a Tokio runtime.
    pub fn with_kube_config(
        config: KubernetesConfig,
        kube_config: kube::Config,
    ) -> Result<Self, ActuatorError> {
        // The client's request buffer spawns a task: without a runtime that
        // would panic.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(failed(
                "the Kubernetes client needs a Tokio runtime".to_owned(),
            ));
        }
        let client = kube::Client::try_from(kube_config)
            .map_err(|e| client_error("cannot build the Kubernetes client", e))?;
        Self::with_client(config, client)
    }

    /// With a client built elsewhere.
    pub fn with_client(
        config: KubernetesConfig,
        client: kube::Client,
    ) -> Result<Self, ActuatorError> {
        config.validate().map_err(limit)?;
        let namespace = config
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(KubernetesActuator {
            config,
            namespace,
            client,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    /// The namespace acted on.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The backends in the order to choose removals from (front first): for a
    /// StatefulSet [`highest_ordinal_first`]; for a Deployment any drained
    /// pod will do, so the order is kept.
    pub fn removal_order(&self, backends: &[Provisioned]) -> Vec<Provisioned> {
        match self.config.workload_kind {
            WorkloadKind::StatefulSet => highest_ordinal_first(&self.config.workload, backends),
            WorkloadKind::Deployment => backends.to_vec(),
        }
    }

    fn scale_path(&self) -> String {
        format!(
            "/apis/apps/v1/namespaces/{}/{}/{}/scale",
            self.namespace,
            self.config.workload_kind.resource(),
            self.config.workload
        )
    }

    fn pod_path(&self, pod: &str) -> String {
        format!("/api/v1/namespaces/{}/pods/{pod}", self.namespace)
    }

    async fn get_scale(&self) -> Result<i32, ActuatorError> {
        let name = &self.config.workload;
        let result = match self.config.workload_kind {
            WorkloadKind::Deployment => {
                Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
                    .get_scale(name)
                    .await
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace)
                    .get_scale(name)
                    .await
            }
        };
        let scale = result.map_err(|e| api_error(&format!("GET {}", self.scale_path()), &e))?;
        Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
    }

    async fn patch_scale(&self, replicas: i32) -> Result<(), ActuatorError> {
        let name = &self.config.workload;
        let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
        let params = PatchParams::default();
        let result = match self.config.workload_kind {
            WorkloadKind::Deployment => {
                Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
                    .patch_scale(name, &params, &patch)
                    .await
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace)
                    .patch_scale(name, &params, &patch)
                    .await
            }
        };
        result
            .map(|_| ())
            .map_err(|e| api_error(&format!("PATCH {}", self.scale_path()), &e))
    }

    /// Sets (`Some`) or removes (`None`) the deletion cost of a pod.
    async fn annotate(&self, pod: &str, cost: Option<&str>) -> Result<PodState, ActuatorError> {
        let patch = Patch::Merge(serde_json::json!({
            "metadata": { "annotations": { POD_DELETION_COST: cost } }
        }));
        let api = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
        match api.patch(pod, &PatchParams::default(), &patch).await {
            Ok(p) if p.metadata.deletion_timestamp.is_some() => Ok(PodState::Leaving),
            Ok(_) => Ok(PodState::Live),
            Err(e) if is_not_found(&e) => Ok(PodState::Leaving),
            Err(e) => Err(api_error(&format!("PATCH {}", self.pod_path(pod)), &e)),
        }
    }

    fn check_statefulset_removals(
        &self,
        desired: u32,
        remove: &[Provisioned],
    ) -> Result<(), ActuatorError> {
        let sts = &self.config.workload;
        for p in remove {
            match statefulset_ordinal(sts, &p.name) {
                None => {
                    return Err(limit(format!(
                        "{:?} is not a pod of StatefulSet {sts:?} ({sts}-<ordinal>)",
                        p.name
                    )))
                }
                Some(ordinal) if ordinal < desired => {
                    return Err(limit(format!(
                        "StatefulSet {sts:?} removes its highest ordinals: scaling to {desired} \
                         removes {sts}-{desired} and above, not {:?}; choose removals \
                         highest ordinal first",
                        p.name
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    async fn apply_deployment_removals(
        &self,
        desired: i32,
        remove: &[Provisioned],
    ) -> Result<(), ActuatorError> {
        let current = self.get_scale().await?;
        // In the caller's order, each pod once.
        let mut names: Vec<&str> = Vec::with_capacity(remove.len());
        for p in remove {
            if !names.contains(&p.name.as_str()) {
                names.push(&p.name);
            }
        }
        let mut live = Vec::new();
        for &name in &names {
            if self.annotate(name, Some(REMOVAL_COST)).await? == PodState::Live {
                live.push(name);
            }
        }
        let room = usize::try_from(current.saturating_sub(desired)).unwrap_or(0);
        if live.len() > room {
            for &name in &live {
                if let Err(e) = self.annotate(name, None).await {
                    tracing::warn!(pod = name, error = %e, "could not take the deletion cost off");
                }
            }
            return Err(limit(format!(
                "Deployment {:?} removes pods only by scaling down: {} pod(s) to remove \
                 ({}) but scaling {current} -> {desired} removes {room}",
                self.config.workload,
                live.len(),
                live.join(", ")
            )));
        }
        Ok(())
    }

    async fn apply_inner(&self, desired: u32, remove: &[Provisioned]) -> Result<(), ActuatorError> {
        let replicas = i32::try_from(desired)
            .map_err(|_| limit(format!("{desired} replicas is more than Kubernetes allows")))?;
        match self.config.workload_kind {
            WorkloadKind::StatefulSet => self.check_statefulset_removals(desired, remove)?,
            WorkloadKind::Deployment if !remove.is_empty() => {
                self.apply_deployment_removals(replicas, remove).await?
            }
            WorkloadKind::Deployment => {}
        }
        self.patch_scale(replicas).await
    }

    async fn discover_inner(&self) -> Result<Vec<Provisioned>, ActuatorError> {
        let api = Api::<EndpointSlice>::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("{SERVICE_NAME_LABEL}={}", self.config.service);
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| {
                api_error(
                    &format!(
                        "GET /apis/discovery.k8s.io/v1/namespaces/{}/endpointslices?labelSelector={selector}",
                        self.namespace
                    ),
                    &e,
                )
            })?;
        Ok(provisioned_from_slices(&self.config, &list.items))
    }
}

impl Actuator for KubernetesActuator {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn removal_order(&self, candidates: &[Provisioned]) -> Option<Vec<Provisioned>> {
        match self.config.workload_kind {
            WorkloadKind::StatefulSet => {
                Some(highest_ordinal_first(&self.config.workload, candidates))
            }
            WorkloadKind::Deployment => None,
        }
    }

    fn apply<'a>(
        &'a self,
        desired: u32,
        remove: &'a [Provisioned],
    ) -> BoxFuture<'a, Result<(), ActuatorError>> {
        Box::pin(self.apply_inner(desired, remove))
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<Provisioned>, ActuatorError>> {
        Box::pin(self.discover_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Provisioned {
        Provisioned {
            name: name.to_owned(),
            addr: "10.0.0.1:36421".parse().unwrap(),
            metrics: None,
        }
    }

    #[test]
    fn ordinals() {
        assert_eq!(statefulset_ordinal("ric", "ric-0"), Some(0));
        assert_eq!(statefulset_ordinal("ric", "ric-12"), Some(12));
        assert_eq!(statefulset_ordinal("ric", "ric-e2-1"), None);
        assert_eq!(statefulset_ordinal("ric", "ric-"), None);
        assert_eq!(statefulset_ordinal("ric", "ric-01"), None);
        assert_eq!(statefulset_ordinal("ric", "ricx-1"), None);
        assert_eq!(statefulset_ordinal("ric", "ric-99999999999"), None);
        assert_eq!(statefulset_ordinal("ric-e2", "ric-e2-3"), Some(3));
    }

    #[test]
    fn highest_ordinal_first_orders_numerically() {
        let backends = [p("ric-2"), p("other"), p("ric-10"), p("ric-0"), p("abc")];
        let names: Vec<String> = highest_ordinal_first("ric", &backends)
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["ric-10", "ric-2", "ric-0", "abc", "other"]);
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: KubernetesConfig = toml::from_str(
            r#"
            workload_kind = "StatefulSet"
            workload = "ric"
            service = "ric-e2"
            "#,
        )
        .unwrap();
        assert_eq!(
            c,
            KubernetesConfig::new(WorkloadKind::StatefulSet, "ric", "ric-e2")
        );
        assert!(c.validate().is_ok());
        let bad = KubernetesConfig {
            metrics_path: "metrics".into(),
            ..c.clone()
        };
        assert!(bad.validate().unwrap_err().contains("metrics_path"));
        let bad = KubernetesConfig {
            workload: String::new(),
            ..c
        };
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<KubernetesConfig>(
            "workload_kind = \"Deployment\"\nworkload = \"a\"\nservice = \"b\"\nport = 1\n"
        )
        .is_err());
    }
}
