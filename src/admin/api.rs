//! The JSON API under `/api/v1/` (see the module doc of [`super`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::{error, json as reply_json, AdminState};
use crate::balance::live::View;
use crate::balance::load::{Hot, Score};
use crate::balance::{Backend, Member, PoolError, Removal};
use crate::e2ap::RicRequestId;
use crate::proxy::table::{AssocRecord, Command};
use std::sync::Arc;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

type Resp = Response<Full<Bytes>>;

pub(super) async fn route(state: &AdminState, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let parts: Vec<&str> = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (&method, parts.as_slice()) {
        (&Method::GET, ["backends"]) => backends(state),
        (&Method::POST, ["backends"]) => add_backend(state, req).await,
        (&Method::GET, ["backends", name]) => with_member(state, name, |m, v, now| {
            reply_json(StatusCode::OK, &backend_json(state, m, v, now))
        }),
        (&Method::DELETE, ["backends", name]) => remove_backend(state, name),
        (&Method::POST, ["backends", name, "drain"]) => drain(state, name, true),
        (&Method::DELETE, ["backends", name, "drain"]) => drain(state, name, false),
        (&Method::GET, ["associations"]) => associations(state),
        (&Method::POST, ["associations", id, "migrate"]) => migrate_one(state, id, req).await,
        (&Method::GET, ["associations", id, "router"]) => router_view(state, id).await,
        (&Method::POST, ["associations", id, "subscriptions", sub, "move"]) => {
            move_subscription(state, id, sub, req).await
        }
        (&Method::GET, ["plan"]) => plan(state, req.uri().query().unwrap_or("")),
        (&Method::POST, ["plan", "execute"]) => execute_plan(state, req).await,
        (&Method::POST, ["config", "reload"]) => match state.reload.clone() {
            Some(r) => match tokio::task::spawn_blocking(move || r.reload()).await {
                Ok(Ok(report)) => reply_json(StatusCode::OK, &json!(report)),
                Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            None => error(
                StatusCode::NOT_FOUND,
                "configuration reload is not available here",
            ),
        },
        (&Method::GET, ["migrations"]) => match &state.migrate {
            Some(x) => reply_json(
                StatusCode::OK,
                &json!({ "last_plan": x.last_plan(), "moves": x.records() }),
            ),
            None => no_migrate(),
        },
        (&Method::GET, ["balancer"]) => balancer(state),
        (&Method::GET, ["scaler"]) => match &state.scale {
            Some(s) => reply_json(StatusCode::OK, &s.status(&state.pool)),
            None => error(
                StatusCode::NOT_FOUND,
                "the scaler is off ([scale] enabled = false)",
            ),
        },
        (
            _,
            ["backends"]
            | ["backends", _]
            | ["backends", _, "drain"]
            | ["associations"]
            | ["associations", _, "migrate"]
            | ["associations", _, "router"]
            | ["associations", _, "subscriptions", _, "move"]
            | ["plan"]
            | ["plan", "execute"]
            | ["migrations"]
            | ["config", "reload"]
            | ["balancer"]
            | ["scaler"],
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} not allowed on {path}"),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no route {method} {path}")),
    }
}

fn no_migrate() -> Resp {
    error(StatusCode::NOT_FOUND, "migration is not available here")
}

async fn body_of(req: Request<Incoming>) -> Result<Bytes, Resp> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("reading the body: {e}"),
        )),
    }
}

/// A plan request as the API takes it (query string or JSON body):
/// `request` = `consolidate` | `remove` (with `backends`, names, comma
/// separated in a query) | `remove_count` (with `count`) | `rebalance` (with `onto`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanQuery {
    #[serde(default)]
    request: Option<String>,
    #[serde(default)]
    backends: Vec<String>,
    #[serde(default)]
    count: Option<usize>,
    #[serde(default)]
    onto: Option<String>,
}

impl PlanQuery {
    fn from_query(q: &str) -> Result<Self, String> {
        let mut out = PlanQuery::default();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "request" => out.request = Some(v.to_owned()),
                "backends" => {
                    out.backends = v
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "count" => {
                    out.count = Some(
                        v.parse()
                            .map_err(|_| format!("count {v:?} is not a number"))?,
                    )
                }
                "onto" => out.onto = Some(v.to_owned()),
                _ => return Err(format!("unknown parameter {k:?}")),
            }
        }
        Ok(out)
    }

    fn request(&self, state: &AdminState) -> Result<crate::migrate::plan::Request, String> {
        use crate::migrate::plan::Request as R;
        let id = |name: &str| {
            state
                .pool
                .find(name)
                .map(|m| m.id())
                .ok_or_else(|| format!("no backend {name:?}"))
        };
        match self.request.as_deref().unwrap_or("consolidate") {
            "consolidate" => Ok(R::Consolidate),
            "remove" if !self.backends.is_empty() => Ok(R::Remove {
                backends: self
                    .backends
                    .iter()
                    .map(|n| id(n))
                    .collect::<Result<_, _>>()?,
            }),
            "remove" => Err("remove needs backends".into()),
            "remove_count" => match self.count {
                Some(k) if k > 0 => Ok(R::RemoveCount(k)),
                _ => Err("remove_count needs a count of at least 1".into()),
            },
            "rebalance" => match self.onto.as_deref() {
                Some(n) => Ok(R::Rebalance { onto: id(n)? }),
                None => Err("rebalance needs onto".into()),
            },
            other => Err(format!(
                "unknown request {other:?} (consolidate, remove, remove_count, rebalance)"
            )),
        }
    }
}

fn plan(state: &AdminState, query: &str) -> Resp {
    let Some(x) = &state.migrate else {
        return no_migrate();
    };
    match PlanQuery::from_query(query).and_then(|q| q.request(state)) {
        Ok(r) => reply_json(StatusCode::OK, &json!(x.plan(&r))),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn execute_plan(state: &AdminState, req: Request<Incoming>) -> Resp {
    let Some(x) = state.migrate.clone() else {
        return no_migrate();
    };
    let body = match body_of(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let q: PlanQuery = if body.is_empty() {
        PlanQuery::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(q) => q,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
        }
    };
    let r = match q.request(state) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let p = x.plan(&r);
    if !p.feasible {
        return reply_json(
            StatusCode::CONFLICT,
            &json!({ "error": p.infeasible_reason.clone().unwrap_or_default(), "plan": p }),
        );
    }
    info!(request = ?r, moves = p.moves.len(), "admin API: executing a migration plan");
    let done = x.execute(&p).await;
    reply_json(StatusCode::OK, &json!({ "plan": p, "execution": done }))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    #[serde(default)]
    target: Option<String>,
}

/// The association's record, or the error reply.
fn association(state: &AdminState, id: &str) -> Result<Arc<AssocRecord>, (StatusCode, String)> {
    let Ok(n) = id.parse::<u64>() else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not an association id"),
        ));
    };
    state
        .associations
        .get(n)
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no association {n}")))
}

/// Router mode: the pods a node is shared by and its subscription table.
async fn router_view(state: &AdminState, id: &str) -> Resp {
    let r = match association(state, id) {
        Ok(r) => r,
        Err((code, why)) => return error(code, why),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if !r.command(Command::RouterView { reply: tx }) {
        return error(StatusCode::GONE, format!("association {} ended", r.id));
    }
    match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(Some(v))) => reply_json(StatusCode::OK, &v),
        Ok(Ok(None)) => error(
            StatusCode::CONFLICT,
            format!(
                "association {} is in association mode, not router mode",
                r.id
            ),
        ),
        Ok(Err(_)) => error(StatusCode::GONE, format!("association {} ended", r.id)),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the association did not answer in 5 s".to_owned(),
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveSubscriptionBody {
    to: String,
}

/// Router mode: hand one subscription over to another pod
/// (`{"to": "ric-2"}`; the subscription as `requestor-instance`, node side).
async fn move_subscription(
    state: &AdminState,
    id: &str,
    sub: &str,
    req: Request<Incoming>,
) -> Resp {
    let r = match association(state, id) {
        Ok(r) => r,
        Err((code, why)) => return error(code, why),
    };
    let node_id = match sub
        .split_once('-')
        .map(|(a, b)| (a.parse::<u16>(), b.parse::<u16>()))
    {
        Some((Ok(requestor), Ok(instance))) => RicRequestId {
            requestor,
            instance,
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{sub:?} is not a RICrequestID (requestor-instance)"),
            )
        }
    };
    let body = match body_of(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let b: MoveSubscriptionBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
    };
    let Some(to) = state.pool.find(&b.to) else {
        return error(StatusCode::NOT_FOUND, format!("no backend {:?}", b.to));
    };
    info!(association = r.id, %node_id, to = %b.to, "admin API: moving a subscription (router mode)");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sent = r.command(Command::MoveSubscription {
        node_id,
        to: to.id(),
        reply: tx,
    });
    if !sent {
        return error(StatusCode::GONE, format!("association {} ended", r.id));
    }
    match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(Ok(from))) => reply_json(
            StatusCode::ACCEPTED,
            &json!({ "node_id": node_id, "from": from, "to": b.to, "state": "moving" }),
        ),
        Ok(Ok(Err(reason))) => error(StatusCode::CONFLICT, reason),
        Ok(Err(_)) => error(StatusCode::GONE, format!("association {} ended", r.id)),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the association did not answer in 5 s".to_owned(),
        ),
    }
}

async fn migrate_one(state: &AdminState, id: &str, req: Request<Incoming>) -> Resp {
    let Some(x) = state.migrate.clone() else {
        return no_migrate();
    };
    let Ok(id) = id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not an association id"),
        );
    };
    let body = match body_of(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let b: MigrateBody = if body.is_empty() {
        MigrateBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
        }
    };
    let target = match b.target.as_deref() {
        Some(n) => match state.pool.find(n) {
            Some(m) => Some(m.id()),
            None => return error(StatusCode::NOT_FOUND, format!("no backend {n:?}")),
        },
        None => None,
    };
    if state.associations.get(id).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no association {id}"));
    }
    info!(
        association = id,
        ?target,
        "admin API: moving an association"
    );
    match x
        .move_one(id, target, crate::proxy::table::MoveReason::Planned, 1)
        .await
    {
        Some(o @ crate::proxy::table::MoveOutcome::Switched { .. }) => {
            reply_json(StatusCode::OK, &json!(o))
        }
        Some(o) => reply_json(StatusCode::CONFLICT, &json!(o)),
        None => error(StatusCode::GONE, format!("association {id} ended")),
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn hot_names(h: Hot) -> Vec<&'static str> {
    [(Hot::C, "c"), (Hot::CPU, "cpu"), (Hot::LATENCY, "latency")]
        .into_iter()
        .filter(|(bit, _)| h.contains(*bit))
        .map(|(_, n)| n)
        .collect()
}

fn score_json(s: &Score) -> Value {
    json!({
        "c": s.c,
        "headroom": s.headroom(),
        "hot": hot_names(s.hot),
        "cpu": s.cpu,
        "cpu_source": s.cpu_source.as_str(),
        "latency": s.latency,
        "proc_time": s.proc_time,
        "in_flight": s.in_flight,
    })
}

fn backend_json(state: &AdminState, m: &Member, view: &View, now: Instant) -> Value {
    let snap = &view.snapshot;
    let entry = snap.index_of(m.id());
    let load = entry.and_then(|i| snap.backends().get(i));
    let score = entry.and_then(|i| snap.scores().get(i));
    let healthy = load.is_none_or(|l| l.healthy);
    let status = if m.removing() {
        "removing"
    } else if m.draining() {
        "draining"
    } else if !healthy {
        "unhealthy"
    } else {
        "open"
    };
    let (ewma, p99, samples) = m
        .with_latency(|w| (w.ewma(), w.p99(now), w.count()))
        .unwrap_or((None, None, 0));
    let probe = state.balance.probe_status(m.id(), now).map(|p| {
        json!({
            "age_s": p.age.map(|a| a.as_secs_f64()),
            "consecutive_failures": p.consecutive_failures,
            "failures_total": p.failures_total,
            "successes_total": p.successes_total,
            "healthy": p.healthy,
        })
    });
    json!({
        "name": m.name(),
        "id": m.id().0,
        "addr": m.backend.addr.to_string(),
        "secondary_addrs": m.backend.secondary_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "metrics": m.backend.metrics,
        "status": status,
        "healthy": healthy,
        "draining": m.draining(),
        "removing": m.removing(),
        "added_s_ago": now.saturating_duration_since(m.added_at).as_secs_f64(),
        "associations": m.associations(),
        "in_flight": m.in_flight(),
        "latency": {
            "ewma_ms": ewma.map(|s| ms(s.value)),
            "ewma_age_s": ewma.map(|s| now.saturating_duration_since(s.at).as_secs_f64()),
            "p99_ms": p99.map(ms),
            "samples": samples,
        },
        "score": score.map(score_json),
        "probe": probe,
    })
}

fn backends(state: &AdminState) -> Resp {
    let view = state.balance.view();
    let now = now();
    let list: Vec<Value> = state
        .pool
        .members()
        .iter()
        .map(|m| backend_json(state, m, &view, now))
        .collect();
    reply_json(StatusCode::OK, &json!({ "backends": list }))
}

fn with_member(
    state: &AdminState,
    name: &str,
    f: impl FnOnce(&Member, &View, Instant) -> Resp,
) -> Resp {
    match state.pool.find(name) {
        Some(m) => f(&m, &state.balance.view(), now()),
        None => error(StatusCode::NOT_FOUND, PoolError::Unknown(name.to_owned())),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBackend {
    name: String,
    addr: String,
    #[serde(default)]
    secondary_addrs: Vec<String>,
    #[serde(default)]
    metrics: Option<String>,
}

fn pool_error(e: PoolError) -> Resp {
    let status = match e {
        PoolError::Unknown(_) => StatusCode::NOT_FOUND,
        PoolError::DuplicateName(_) | PoolError::DuplicateAddr { .. } => StatusCode::CONFLICT,
        PoolError::BadName(_) => StatusCode::BAD_REQUEST,
    };
    error(status, e)
}

async fn add_backend(state: &AdminState, req: Request<Incoming>) -> Resp {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let nb: NewBackend = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
    };
    let addr: SocketAddr = match nb.addr.parse() {
        Ok(a) => a,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("addr {:?} is not an IP:port address", nb.addr),
            )
        }
    };
    if addr.port() == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "addr: port 0 is not a backend address",
        );
    }
    let mut secondary_addrs: Vec<SocketAddr> = Vec::with_capacity(nb.secondary_addrs.len());
    for (j, text) in nb.secondary_addrs.iter().enumerate() {
        let why = match text.parse::<SocketAddr>() {
            Err(_) => "is not an IP:port address",
            Ok(a) if a.port() != addr.port() => "must use the port of addr (one SCTP endpoint)",
            Ok(a) if a == addr || secondary_addrs.contains(&a) => "duplicate address",
            Ok(a) => {
                secondary_addrs.push(a);
                continue;
            }
        };
        return error(
            StatusCode::BAD_REQUEST,
            format!("secondary_addrs[{j}] {text:?} {why}"),
        );
    }
    let metrics = nb.metrics.or_else(|| {
        state
            .default_metrics
            .as_ref()
            .map(|(port, path)| crate::probe::http::metrics_url(addr.ip(), *port, path))
    });
    if let Some(url) = &metrics {
        if let Err(e) = crate::probe::Target::with_url(crate::session::BackendId(0), url) {
            return error(StatusCode::BAD_REQUEST, format!("metrics URL {url:?}: {e}"));
        }
    }
    let mut b = Backend::new(0, nb.name, addr);
    b.secondary_addrs = secondary_addrs;
    b.metrics = metrics;
    match state.pool.add(b, now()) {
        Ok(m) => {
            info!(backend = m.name(), addr = %m.backend.addr, secondary_addrs = ?m.backend.secondary_addrs, metrics = ?m.backend.metrics, "backend added (admin API)");
            state
                .balance
                .metrics()
                .membership
                .with_label_values(&["added"])
                .inc();
            let view = state.balance.view();
            reply_json(StatusCode::CREATED, &backend_json(state, &m, &view, now()))
        }
        Err(e) => pool_error(e),
    }
}

fn remove_backend(state: &AdminState, name: &str) -> Resp {
    match state.pool.remove(name) {
        Ok(Removal::Removed) => {
            info!(backend = name, "backend removed (admin API)");
            let bm = state.balance.metrics();
            bm.membership.with_label_values(&["removed"]).inc();
            bm.forget(name);
            reply_json(StatusCode::OK, &json!({ "name": name, "removed": true }))
        }
        Ok(Removal::Pending { associations }) => {
            info!(
                backend = name,
                associations,
                "backend draining: removed when its associations are gone (admin API)"
            );
            reply_json(
                StatusCode::ACCEPTED,
                &json!({ "name": name, "removed": false, "draining": true, "associations": associations }),
            )
        }
        Err(e) => pool_error(e),
    }
}

fn drain(state: &AdminState, name: &str, on: bool) -> Resp {
    match state.pool.drain(name, on) {
        Ok(m) => {
            info!(
                backend = name,
                drain = on,
                associations = m.associations(),
                "backend drain changed (admin API)"
            );
            state
                .balance
                .metrics()
                .membership
                .with_label_values(&[if on { "drained" } else { "undrained" }])
                .inc();
            let view = state.balance.view();
            reply_json(StatusCode::OK, &backend_json(state, &m, &view, now()))
        }
        Err(e) => pool_error(e),
    }
}

fn associations(state: &AdminState) -> Resp {
    let now = now();
    let list: Vec<Value> = state
        .associations
        .list()
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "node": r.node(),
                "peer": r.peer.to_string(),
                "backend": r.backend(),
                "mode": if r.pods().is_some() { "router" } else { "association" },
                "pods": r.pods(),
                "streams": { "in": r.streams_in, "out": r.streams_out },
                "in_flight": r.in_flight(),
                "age_s": now.saturating_duration_since(r.accepted_at).as_secs_f64(),
                "accepted_at": humantime::format_rfc3339_millis(r.accepted_wall).to_string(),
            })
        })
        .collect();
    reply_json(
        StatusCode::OK,
        &json!({ "count": list.len(), "associations": list }),
    )
}

fn balancer(state: &AdminState) -> Resp {
    let view = state.balance.view();
    let now = now();
    let snap = &view.snapshot;
    let p = snap.pool();
    let name = |id| {
        state
            .pool
            .get(id)
            .map(|m| m.name().to_owned())
            .unwrap_or_else(|| format!("{id}"))
    };
    let scores: Vec<Value> = snap
        .backends()
        .iter()
        .zip(snap.scores())
        .map(|(b, s)| {
            let mut v = score_json(s);
            if let Value::Object(o) = &mut v {
                o.insert("backend".into(), json!(name(b.id)));
                o.insert("open".into(), json!(b.accepts_new()));
                o.insert("associations".into(), json!(b.associations));
                o.insert("in_flight_streams".into(), json!(b.in_flight));
            }
            v
        })
        .collect();
    let model = snap.model();
    let bnb = view.balancer.config();
    reply_json(
        StatusCode::OK,
        &json!({
            "mode": view.balancer.mode().as_str(),
            "bear_for_s": view.balancer.bear_since().map(|t| now.saturating_duration_since(t).as_secs_f64()),
            "last_scale_up": view.last_scale_up.map(|(t, cause)| json!({
                "at": humantime::format_rfc3339_millis(t).to_string(),
                "cause": cause,
            })),
            "snapshot_age_ms": ms(now.saturating_duration_since(snap.taken_at())),
            "pool": {
                "open": p.open,
                "hot": p.hot,
                "mean_c": p.mean_c,
                "max_c": p.max_c,
                "hottest": p.hottest.map(name),
                "max_cpu": p.max_cpu,
                "max_latency": p.max_latency,
                "stale_cpu": p.stale_cpu,
            },
            "model": {
                "weights": { "cpu": model.weights.cpu, "latency": model.weights.latency,
                             "proc_time": model.weights.proc_time, "in_flight": model.weights.in_flight },
                "limits": { "cpu_max": model.limits.cpu_max, "latency_max_ms": ms(model.limits.latency_max),
                            "proc_time_max_ms": ms(model.limits.proc_time_max),
                            "in_flight_max": model.limits.in_flight_max,
                            "associations_max": model.limits.associations_max },
                "thresholds": { "c": model.thresholds.c, "cpu": model.thresholds.cpu,
                                "latency": model.thresholds.latency },
                "max_age_s": model.max_age.as_secs_f64(),
                "exit": { "c": bnb.exit_c, "cpu": bnb.exit_cpu, "latency": bnb.exit_latency,
                          "hold_s": bnb.hold.as_secs_f64(), "settle_s": bnb.settle.as_secs_f64() },
            },
            "scores": scores,
            "decisions": state.balance.decisions(),
        }),
    )
}
