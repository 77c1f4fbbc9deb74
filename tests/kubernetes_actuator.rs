//! The Kubernetes actuator against recorded API shapes.
//!
//! No API server runs here, so a small HTTP/1 server on 127.0.0.1 plays one:
//! it serves the JSON objects under `tests/kubernetes/` (Scale, Pod,
//! EndpointSliceList, Status errors, written after the Kubernetes API
//! reference), applies merge patches to them as the API server does
//! (RFC 7386, `application/merge-patch+json` only, else 415), filters lists
//! by an equality `labelSelector`, answers 404 Status objects for unknown
//! paths, and records every request (method, path, query, content type,
//! body) for the assertions. The actuator talks to it through a plain
//! `kube::Config` with the server's URL and no credentials.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use e2lb::scale::actuator::kubernetes::{
    highest_ordinal_first, provisioned_from_slices, IpFamily, KubernetesActuator, KubernetesConfig,
    WorkloadKind, POD_DELETION_COST,
};
use e2lb::scale::actuator::{Actuator, ActuatorError, Provisioned};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

const NS: &str = "ran";
const STS_SCALE: &str = "/apis/apps/v1/namespaces/ran/statefulsets/ric/scale";
const DEPLOY_SCALE: &str = "/apis/apps/v1/namespaces/ran/deployments/ric/scale";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/ran/endpointslices";
const POD: &str = "ric-6f9c7b8d4-x2x7q";
const POD_PATH: &str = "/api/v1/namespaces/ran/pods/ric-6f9c7b8d4-x2x7q";
const TERMINATING_POD: &str = "ric-6f9c7b8d4-k8v2m";
const TERMINATING_POD_PATH: &str = "/api/v1/namespaces/ran/pods/ric-6f9c7b8d4-k8v2m";
const MERGE_PATCH: &str = "application/merge-patch+json";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/kubernetes/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    /// Query parameters, percent-decoded, empty ones left out (kube sends
    /// `?` and `&labelSelector=…`).
    query: Vec<(String, String)>,
    content_type: Option<String>,
    body: String,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

/// An injected answer: status, content type, body.
type Fault = (u16, &'static str, String);

#[derive(Default)]
struct State {
    /// Objects by path (merge-patchable).
    objects: HashMap<String, Value>,
    /// Lists by path (filtered by labelSelector).
    lists: HashMap<String, Value>,
    /// Answers that replace the normal handling, by (method, path).
    faults: HashMap<(String, String), Fault>,
    requests: Vec<Recorded>,
}

#[derive(Clone, Default)]
struct FakeApi(Arc<Mutex<State>>);

impl FakeApi {
    fn object(self, path: &str, fixture_name: &str) -> Self {
        self.0
            .lock()
            .unwrap()
            .objects
            .insert(path.to_owned(), fixture(fixture_name));
        self
    }

    fn list(self, path: &str, fixture_name: &str) -> Self {
        self.0
            .lock()
            .unwrap()
            .lists
            .insert(path.to_owned(), fixture(fixture_name));
        self
    }

    fn fault(
        self,
        method: &str,
        path: &str,
        status: u16,
        content_type: &'static str,
        body: String,
    ) -> Self {
        self.0.lock().unwrap().faults.insert(
            (method.to_owned(), path.to_owned()),
            (status, content_type, body),
        );
        self
    }

    fn status_fault(self, method: &str, path: &str, fixture_name: &str) -> Self {
        let status = fixture(fixture_name);
        let code = status["code"].as_u64().unwrap() as u16;
        self.fault(method, path, code, "application/json", status.to_string())
    }

    fn delete(&self, path: &str) {
        self.0.lock().unwrap().objects.remove(path);
    }

    fn get(&self, path: &str) -> Value {
        self.0.lock().unwrap().objects[path].clone()
    }

    fn requests(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().requests.clone()
    }

    fn clear_requests(&self) {
        self.0.lock().unwrap().requests.clear();
    }

    async fn start(self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = self.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.handle(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        let content_type = req
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        let mut state = self.0.lock().unwrap();
        state.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
        });
        if let Some((code, ct, body)) = state.faults.get(&(method.clone(), path.clone())) {
            return respond(*code, ct, body.clone());
        }
        match method.as_str() {
            "GET" => {
                if let Some(list) = state.lists.get(&path) {
                    let selector = query
                        .iter()
                        .find(|(k, _)| k == "labelSelector")
                        .map(|(_, v)| v.as_str());
                    return ok(&filter_list(list, selector));
                }
                match state.objects.get(&path) {
                    Some(obj) => ok(obj),
                    None => not_found(&path),
                }
            }
            "PATCH" => {
                if content_type.as_deref() != Some(MERGE_PATCH) {
                    return status(
                        415,
                        "UnsupportedMediaType",
                        "the body of the request was in an unknown format",
                    );
                }
                let Ok(patch) = serde_json::from_str::<Value>(&body) else {
                    return status(400, "BadRequest", "the body of the request is not JSON");
                };
                match state.objects.get_mut(&path) {
                    Some(obj) => {
                        merge_patch(obj, &patch);
                        let rv: u64 = obj["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        obj["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
                        ok(obj)
                    }
                    None => not_found(&path),
                }
            }
            _ => status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let target = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else {
            merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Keeps the items whose labels match every `key=value` of the selector.
fn filter_list(list: &Value, selector: Option<&str>) -> Value {
    let mut list = list.clone();
    let wanted: Vec<(&str, &str)> = selector
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').expect("equality selector"))
        .collect();
    let items = list["items"].as_array_mut().unwrap();
    items.retain(|item| {
        wanted
            .iter()
            .all(|(k, v)| item["metadata"]["labels"][*k].as_str() == Some(*v))
    });
    list
}

fn respond(code: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn ok(body: &Value) -> Response<Full<Bytes>> {
    respond(200, "application/json", body.to_string())
}

fn status(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    respond(code, "application/json", body.to_string())
}

/// What the API server says for a missing object: `pods "x" not found`.
fn not_found(path: &str) -> Response<Full<Bytes>> {
    let mut segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segments.last() == Some(&"scale") {
        segments.pop();
    }
    let name = segments.pop().unwrap_or("");
    let resource = segments.pop().unwrap_or("");
    status(404, "NotFound", &format!("{resource} \"{name}\" not found"))
}

fn config(kind: WorkloadKind) -> KubernetesConfig {
    KubernetesConfig {
        namespace: Some(NS.to_owned()),
        metrics_port: Some("metrics".to_owned()),
        ..KubernetesConfig::new(kind, "ric", "ric-e2")
    }
}

fn actuator_at(addr: SocketAddr, config: KubernetesConfig) -> KubernetesActuator {
    let url = format!("http://{addr}").parse().unwrap();
    let mut kube_config = kube::Config::new(url);
    kube_config.connect_timeout = Some(Duration::from_secs(2));
    kube_config.read_timeout = Some(Duration::from_secs(5));
    KubernetesActuator::with_kube_config(config, kube_config).unwrap()
}

fn backend(name: &str) -> Provisioned {
    Provisioned {
        name: name.to_owned(),
        addr: "10.244.1.5:36421".parse().unwrap(),
        metrics: None,
    }
}

async fn apply(
    a: &KubernetesActuator,
    desired: u32,
    remove: &[Provisioned],
) -> Result<(), ActuatorError> {
    tokio::time::timeout(Duration::from_secs(20), a.apply(desired, remove))
        .await
        .expect("apply hung")
}

async fn discover(a: &KubernetesActuator) -> Result<Vec<Provisioned>, ActuatorError> {
    tokio::time::timeout(Duration::from_secs(20), a.discover())
        .await
        .expect("discover hung")
}

fn assert_scale_patch(r: &Recorded, path: &str, replicas: u32) {
    assert_eq!(r.method, "PATCH", "{r:?}");
    assert_eq!(r.path, path);
    assert!(r.query.is_empty(), "{:?}", r.query);
    assert_eq!(r.content_type.as_deref(), Some(MERGE_PATCH));
    assert_eq!(r.json(), json!({ "spec": { "replicas": replicas } }));
}

fn failed_message(err: ActuatorError) -> String {
    match err {
        ActuatorError::Failed { actuator, message } => {
            assert_eq!(actuator, "kubernetes");
            message
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn limit_message(err: ActuatorError) -> String {
    match err {
        ActuatorError::Limit { actuator, message } => {
            assert_eq!(actuator, "kubernetes");
            message
        }
        other => panic!("expected Limit, got {other:?}"),
    }
}

#[test]
fn fixtures_parse_as_the_api_types() {
    use k8s_openapi::api::autoscaling::v1::Scale;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

    for name in ["scale_statefulset.json", "scale_deployment.json"] {
        let scale: Scale = serde_json::from_value(fixture(name)).unwrap();
        assert!(scale.spec.unwrap().replicas.is_some(), "{name}");
    }
    for name in ["pod_deployment.json", "pod_terminating.json"] {
        let pod: Pod = serde_json::from_value(fixture(name)).unwrap();
        assert!(pod.metadata.name.is_some(), "{name}");
    }
    let list = fixture("endpointslices.json");
    assert_eq!(list["kind"], "EndpointSliceList");
    for item in list["items"].as_array().unwrap() {
        // List items carry no kind/apiVersion on the wire; add them back as
        // the typed deserializer wants them.
        let mut item = item.clone();
        item["kind"] = json!("EndpointSlice");
        item["apiVersion"] = json!("discovery.k8s.io/v1");
        let slice: EndpointSlice = serde_json::from_value(item).unwrap();
        assert!(!slice.endpoints.is_empty());
    }
    for name in [
        "status_forbidden_scale.json",
        "status_forbidden_endpointslices.json",
        "status_not_found.json",
    ] {
        let status: Status = serde_json::from_value(fixture(name)).unwrap();
        assert_eq!(status.status.as_deref(), Some("Failure"), "{name}");
        assert!(status.code.is_some() && status.message.is_some(), "{name}");
    }
}

#[tokio::test]
async fn scale_up_statefulset_patches_the_scale_subresource() {
    let api = FakeApi::default().object(STS_SCALE, "scale_statefulset.json");
    let addr = api.clone().start().await;
    let a = actuator_at(addr, config(WorkloadKind::StatefulSet));
    assert_eq!(a.kind(), "kubernetes");
    apply(&a, 6, &[]).await.unwrap();
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_scale_patch(&reqs[0], STS_SCALE, 6);
    assert!(reqs[0].query.is_empty(), "{:?}", reqs[0].query);
    assert_eq!(api.get(STS_SCALE)["spec"]["replicas"], 6);
}

#[tokio::test]
async fn scale_up_deployment_patches_only_the_scale() {
    let api = FakeApi::default().object(DEPLOY_SCALE, "scale_deployment.json");
    let addr = api.clone().start().await;
    let a = actuator_at(addr, config(WorkloadKind::Deployment));
    apply(&a, 5, &[]).await.unwrap();
    // Same call again: same request, same state.
    apply(&a, 5, &[]).await.unwrap();
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_scale_patch(&reqs[0], DEPLOY_SCALE, 5);
    assert_scale_patch(&reqs[1], DEPLOY_SCALE, 5);
    assert_eq!(api.get(DEPLOY_SCALE)["spec"]["replicas"], 5);
}

#[tokio::test]
async fn statefulset_scale_down_accepts_the_highest_ordinals() {
    let api = FakeApi::default().object(STS_SCALE, "scale_statefulset.json");
    let addr = api.clone().start().await;
    let a = actuator_at(addr, config(WorkloadKind::StatefulSet));
    // 4 replicas: ric-0..ric-3; removing ric-3 and ric-2 is scaling to 2.
    let remove = [backend("ric-3"), backend("ric-2")];
    apply(&a, 2, &remove).await.unwrap();
    // Retried after it succeeded: accepted again, same request.
    apply(&a, 2, &remove).await.unwrap();
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_scale_patch(&reqs[0], STS_SCALE, 2);
    assert_scale_patch(&reqs[1], STS_SCALE, 2);
    assert_eq!(api.get(STS_SCALE)["spec"]["replicas"], 2);
}

#[tokio::test]
async fn statefulset_scale_down_refuses_a_lower_ordinal() {
    let api = FakeApi::default().object(STS_SCALE, "scale_statefulset.json");
    let addr = api.clone().start().await;
    let a = actuator_at(addr, config(WorkloadKind::StatefulSet));

    let msg = limit_message(apply(&a, 3, &[backend("ric-1")]).await.unwrap_err());
    assert!(msg.contains("highest ordinals"), "{msg}");
    assert!(msg.contains("\"ric-1\"") && msg.contains("ric-3"), "{msg}");

    let msg = limit_message(apply(&a, 3, &[backend("ric-e2-7xkqp")]).await.unwrap_err());
    assert!(msg.contains("not a pod of StatefulSet"), "{msg}");

    // Keeping the pod count but removing one is not a scale-down either.
    limit_message(apply(&a, 4, &[backend("ric-3")]).await.unwrap_err());

    // Refused before any request: the replica count is untouched.
    assert!(api.requests().is_empty(), "{:?}", api.requests());
    assert_eq!(api.get(STS_SCALE)["spec"]["replicas"], 4);

    // The helper orders candidates so that the front ones are accepted.
    let pool = [
        backend("ric-1"),
        backend("ric-3"),
        backend("ric-0"),
        backend("ric-2"),
    ];
    let order = a.removal_order(&pool);
    let names: Vec<&str> = order.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["ric-3", "ric-2", "ric-1", "ric-0"]);
    assert_eq!(highest_ordinal_first("ric", &pool), order);
    apply(&a, 3, &order[..1]).await.unwrap();
    assert_eq!(api.get(STS_SCALE)["spec"]["replicas"], 3);
}

#[tokio::test]
async fn deployment_scale_down_annotates_the_pod_before_scaling() {
    let api = FakeApi::default()
        .object(DEPLOY_SCALE, "scale_deployment.json")
        .object(POD_PATH, "pod_deployment.json");
    let addr = api.clone().start().await;
    let a = actuator_at(addr, config(WorkloadKind::Deployment));
    apply(&a, 2, &[backend(POD)]).await.unwrap();

    let reqs = api.requests();
    let summary: Vec<(&str, &str)> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("GET", DEPLOY_SCALE),
            ("PATCH", POD_PATH),
            ("PATCH", DEPLOY_SCALE)
        ]
    );
    assert_eq!(reqs[1].content_type.as_deref(), Some(MERGE_PATCH));
    assert_eq!(
        reqs[1].json(),
        json!({ "metadata": { "annotations": { POD_DELETION_COST: "-1000" } } })
    );
    assert_scale_patch(&reqs[2], DEPLOY_SCALE, 2);

    let pod = api.get(POD_PATH);
    assert_eq!(pod["metadata"]["annotations"][POD_DELETION_COST], "-1000");
    // The merge patch left the rest of the pod alone.
    assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], "6f9c7b8d4");
    assert_eq!(api.get(DEPLOY_SCALE)["spec"]["replicas"], 2);
}

#[tokio::test]
async fn deployment_removal_retried_after_success_is_accepted() {
    let api = FakeApi::default()
        .object(DEPLOY_SCALE, "scale_deployment.json")
        .object(POD_PATH, "pod_deployment.json")
        .object(TERMINATING_POD_PATH, "pod_terminating.json");
    let addr = api.clone().start().await;
    let a = actuator_at(addr, config(WorkloadKind::Deployment));
    apply(&a, 2, &[backend(POD)]).await.unwrap();

    // The ReplicaSet deleted the pod; the scaler retries the same call, and
    // one with a pod that is still terminating: nothing is left to remove.
    api.delete(POD_PATH);
    api.clear_requests();
    apply(&a, 2, &[backend(POD), backend(TERMINATING_POD)])
        .await
        .unwrap();
    let reqs = api.requests();
    let summary: Vec<(&str, &str)> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("GET", DEPLOY_SCALE),
            ("PATCH", POD_PATH),
            ("PATCH", TERMINATING_POD_PATH),
            ("PATCH", DEPLOY_SCALE)
        ]
    );
    assert_scale_patch(&reqs[3], DEPLOY_SCALE, 2);
}

#[tokio::test]
async fn deployment_removal_without_scale_down_is_refused_and_undone() {
    let api = FakeApi::default()
        .object(DEPLOY_SCALE, "scale_deployment.json")
        .object(POD_PATH, "pod_deployment.json");
    let addr = api.clone().start().await;
    let a = actuator_at(addr, config(WorkloadKind::Deployment));
    // 3 replicas, asked to stay at 3 and remove one: a Deployment cannot.
    let msg = limit_message(apply(&a, 3, &[backend(POD)]).await.unwrap_err());
    assert!(msg.contains("only by scaling down"), "{msg}");
    assert!(msg.contains(POD), "{msg}");

    let reqs = api.requests();
    let methods: Vec<(&str, &str)> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        methods,
        [
            ("GET", DEPLOY_SCALE),
            ("PATCH", POD_PATH),
            ("PATCH", POD_PATH)
        ]
    );
    // The second pod PATCH takes the annotation off (null in a merge patch).
    assert_eq!(
        reqs[2].json(),
        json!({ "metadata": { "annotations": { POD_DELETION_COST: null } } })
    );
    let pod = api.get(POD_PATH);
    assert!(
        pod["metadata"]["annotations"]
            .get(POD_DELETION_COST)
            .is_none(),
        "{pod}"
    );
    assert_eq!(api.get(DEPLOY_SCALE)["spec"]["replicas"], 3);
}

#[tokio::test]
async fn discover_lists_ready_endpoints_of_the_service() {
    let api = FakeApi::default().list(SLICES, "endpointslices.json");
    let addr = api.clone().start().await;
    let a = actuator_at(addr, config(WorkloadKind::StatefulSet));
    let found = discover(&a).await.unwrap();

    let reqs = api.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, SLICES);
    assert_eq!(
        reqs[0].query,
        [(
            "labelSelector".to_owned(),
            "kubernetes.io/service-name=ric-e2".to_owned()
        )]
    );

    // ric-1 is not ready, ric-3 terminating; ric-4 has no ready condition
    // (unset means ready). The dual-stack pods keep their IPv4 address, and
    // ric-admin's slice is another Service's.
    let want = |name: &str, ip: &str| Provisioned {
        name: name.to_owned(),
        addr: format!("{ip}:36421").parse().unwrap(),
        metrics: Some(format!("http://{ip}:8080/metrics")),
    };
    assert_eq!(
        found,
        [
            want("ric-0", "10.244.1.5"),
            want("ric-2", "10.244.3.7"),
            want("ric-4", "10.244.2.9"),
        ]
    );
}

#[tokio::test]
async fn discover_ipv6_formats_addresses_and_urls() {
    let api = FakeApi::default().list(SLICES, "endpointslices.json");
    let addr = api.clone().start().await;
    let mut cfg = config(WorkloadKind::Deployment);
    cfg.ip_family = Some(IpFamily::IPv6);
    cfg.metrics_path = "/stats".into();
    let a = actuator_at(addr, cfg);
    let found = discover(&a).await.unwrap();
    let names: Vec<&str> = found.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["ric-0", "ric-2", "ric-4"]);
    assert_eq!(found[0].addr, "[fd00:10:244:1::5]:36421".parse().unwrap());
    assert!(found[0].addr.is_ipv6());
    assert_eq!(
        found[0].metrics.as_deref(),
        Some("http://[fd00:10:244:1::5]:8080/stats")
    );
}

#[tokio::test]
async fn discover_port_names() {
    let api = FakeApi::default().list(SLICES, "endpointslices.json");
    let addr = api.clone().start().await;

    // No metrics port configured: the pool's default URL.
    let mut cfg = config(WorkloadKind::StatefulSet);
    cfg.metrics_port = None;
    let found = discover(&actuator_at(addr, cfg.clone())).await.unwrap();
    assert_eq!(found.len(), 3);
    assert!(found
        .iter()
        .all(|p| p.metrics.is_none() && p.addr.port() == 36421));

    // A metrics port name the slices lack: likewise.
    cfg.metrics_port = Some("prometheus".into());
    let found = discover(&actuator_at(addr, cfg.clone())).await.unwrap();
    assert_eq!(found.len(), 3);
    assert!(found.iter().all(|p| p.metrics.is_none()));

    // An E2 port name the slices lack: no backend (the slices are skipped).
    cfg.e2_port = "e2ap".into();
    assert!(discover(&actuator_at(addr, cfg.clone()))
        .await
        .unwrap()
        .is_empty());

    // A Service without slices: none either.
    cfg.e2_port = "e2".into();
    cfg.service = "ric-e2-canary".into();
    assert!(discover(&actuator_at(addr, cfg)).await.unwrap().is_empty());
}

#[test]
fn slices_dedupe_one_family() {
    // The same pod in two IPv4 slices (while the controller moves it) counts once.
    let list = fixture("endpointslices.json");
    let mut v4 = list["items"][0].clone();
    v4["kind"] = json!("EndpointSlice");
    v4["apiVersion"] = json!("discovery.k8s.io/v1");
    let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(v4).unwrap();
    let found =
        provisioned_from_slices(&config(WorkloadKind::StatefulSet), &[slice.clone(), slice]);
    assert_eq!(found.len(), 3);
}

#[tokio::test]
async fn forbidden_is_failed_with_the_status_message() {
    let api = FakeApi::default()
        .object(STS_SCALE, "scale_statefulset.json")
        .status_fault("PATCH", STS_SCALE, "status_forbidden_scale.json")
        .status_fault("GET", SLICES, "status_forbidden_endpointslices.json");
    let addr = api.clone().start().await;
    let a = actuator_at(addr, config(WorkloadKind::StatefulSet));

    let msg = failed_message(apply(&a, 5, &[]).await.unwrap_err());
    assert!(msg.contains(&format!("PATCH {STS_SCALE}")), "{msg}");
    assert!(msg.contains("403 Forbidden"), "{msg}");
    assert!(
        msg.contains("cannot patch resource \"statefulsets/scale\" in API group \"apps\""),
        "{msg}"
    );

    let msg = failed_message(discover(&a).await.unwrap_err());
    assert!(msg.contains("403 Forbidden"), "{msg}");
    assert!(
        msg.contains("cannot list resource \"endpointslices\""),
        "{msg}"
    );
    assert_eq!(api.get(STS_SCALE)["spec"]["replicas"], 4);
}

#[tokio::test]
async fn missing_workload_is_failed_not_found() {
    let api = FakeApi::default().status_fault(
        "GET",
        "/apis/apps/v1/namespaces/ran/deployments/ric-missing/scale",
        "status_not_found.json",
    );
    let addr = api.clone().start().await;
    let mut cfg = config(WorkloadKind::Deployment);
    cfg.workload = "ric-missing".into();
    let a = actuator_at(addr, cfg.clone());
    let msg = failed_message(apply(&a, 1, &[backend(POD)]).await.unwrap_err());
    assert!(msg.contains("404 NotFound"), "{msg}");
    assert!(
        msg.contains("deployments.apps \"ric-missing\" not found"),
        "{msg}"
    );

    // Without removals the PATCH itself meets the 404.
    let msg = failed_message(apply(&a, 1, &[]).await.unwrap_err());
    assert!(msg.contains("404 NotFound"), "{msg}");
    assert!(msg.contains("\"ric-missing\" not found"), "{msg}");
}

#[tokio::test]
async fn server_error_without_a_status_body_is_failed() {
    let api = FakeApi::default().fault(
        "PATCH",
        DEPLOY_SCALE,
        503,
        "text/plain",
        "upstream connect error or disconnect/reset before headers".into(),
    );
    let addr = api.clone().start().await;
    let a = actuator_at(addr, config(WorkloadKind::Deployment));
    let msg = failed_message(apply(&a, 2, &[]).await.unwrap_err());
    assert!(msg.contains("503 Service Unavailable"), "{msg}");
    assert!(msg.contains("upstream connect error"), "{msg}");
}

#[tokio::test]
async fn connection_refused_is_failed() {
    // A port that was just free: nothing listens there.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let a = actuator_at(addr, config(WorkloadKind::StatefulSet));
    let msg = failed_message(apply(&a, 2, &[]).await.unwrap_err());
    assert!(msg.contains(&format!("PATCH {STS_SCALE}")), "{msg}");
    assert!(msg.to_lowercase().contains("connect"), "{msg}");
    let msg = failed_message(discover(&a).await.unwrap_err());
    assert!(msg.to_lowercase().contains("connect"), "{msg}");
}

#[tokio::test]
async fn namespace_defaults_to_the_clients() {
    let mut kube_config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    kube_config.default_namespace = "ric-plt".into();
    let cfg = KubernetesConfig::new(WorkloadKind::Deployment, "ric", "ric-e2");
    let a = KubernetesActuator::with_kube_config(cfg.clone(), kube_config.clone()).unwrap();
    assert_eq!(a.namespace(), "ric-plt");

    let bad = KubernetesConfig {
        service: String::new(),
        ..cfg
    };
    limit_message(KubernetesActuator::with_kube_config(bad, kube_config).unwrap_err());
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let kube_config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    let cfg = KubernetesConfig::new(WorkloadKind::Deployment, "ric", "ric-e2");
    let msg = failed_message(KubernetesActuator::with_kube_config(cfg, kube_config).unwrap_err());
    assert!(msg.contains("Tokio runtime"), "{msg}");
}
