//! The second figure source: PromQL instant queries against Prometheus's
//! HTTP API (`GET /api/v1/query?query=...`), for clusters where backends are
//! scraped by Prometheus rather than by e2lb.
//!
//! One query per figure for the whole pool; each result series is matched to
//! a backend by one label (default `instance`) whose expected value is a
//! template over the backend's target URL (default `{authority}`, i.e.
//! `host:port`, which is what Prometheus puts in `instance` for a static
//! target). When a scrape fails Prometheus marks the target's series stale,
//! so a dead backend drops out of instant queries at its next scrape instead
//! of lingering for the 5-minute look-back.
//!
//! The response parsing and templating here are pure; [`super::prober`]
//! does the HTTP.

use std::collections::HashMap;

use serde_json::Value;

use super::error::ProbeError;
use super::http::Target;

/// Which Prometheus to ask and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromqlConfig {
    /// Base URL of the Prometheus server, e.g. `http://127.0.0.1:9090`.
    pub base_url: String,
    /// CPU ratio query. Default `ric_cpu_utilisation_ratio`.
    pub cpu: Option<String>,
    /// Processing time query (seconds). Default `ric_processing_latency_seconds_mean`.
    pub proc_time: Option<String>,
    /// Latency query (seconds). Default `ric_processing_latency_seconds{quantile="0.99"}`.
    pub latency: Option<String>,
    /// The label that names the backend in each result series. Default `instance`.
    pub label: String,
    /// Its expected value per backend: `{authority}` (`host:port` of the
    /// target URL), `{host}`, `{port}` and `{id}` (the backend number) are
    /// replaced. Default `{authority}`.
    pub value_template: String,
}

impl Default for PromqlConfig {
    fn default() -> Self {
        PromqlConfig {
            base_url: "http://127.0.0.1:9090".into(),
            cpu: Some("ric_cpu_utilisation_ratio".into()),
            proc_time: Some("ric_processing_latency_seconds_mean".into()),
            latency: Some(r#"ric_processing_latency_seconds{quantile="0.99"}"#.into()),
            label: "instance".into(),
            value_template: "{authority}".into(),
        }
    }
}

impl PromqlConfig {
    /// The label value expected for `target`.
    pub fn label_value(&self, target: &Target) -> String {
        self.value_template
            .replace("{authority}", &target.authority())
            .replace("{host}", target.host())
            .replace("{port}", &target.port().to_string())
            .replace("{id}", &target.id.0.to_string())
    }

    /// The instant-query URL for `query`.
    pub fn query_url(&self, query: &str) -> String {
        format!(
            "{}/api/v1/query?query={}",
            self.base_url.trim_end_matches('/'),
            percent_encode(query)
        )
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses an instant-query answer into `label value → sample value`.
/// Series without `label` are ignored; the first series per value wins.
pub fn parse_vector(body: &str, label: &str) -> Result<HashMap<String, f64>, ProbeError> {
    let v: Value = serde_json::from_str(body).map_err(|_| ProbeError::Promql("invalid JSON"))?;
    if v.get("status").and_then(Value::as_str) != Some("success") {
        return Err(ProbeError::Promql("status is not success"));
    }
    let data = v.get("data").ok_or(ProbeError::Promql("no data"))?;
    if data.get("resultType").and_then(Value::as_str) != Some("vector") {
        return Err(ProbeError::Promql("result is not an instant vector"));
    }
    let result = data
        .get("result")
        .and_then(Value::as_array)
        .ok_or(ProbeError::Promql("no result array"))?;
    let mut out = HashMap::new();
    for series in result {
        let Some(key) = series
            .get("metric")
            .and_then(|m| m.get(label))
            .and_then(Value::as_str)
        else {
            continue;
        };
        // "value": [ <unix seconds>, "<float as string>" ]
        let value = series
            .get("value")
            .and_then(Value::as_array)
            .and_then(|pair| pair.get(1))
            .and_then(Value::as_str)
            .and_then(super::expo::parse_value)
            .ok_or(ProbeError::Promql("series value is not [time, \"number\"]"))?;
        out.entry(key.to_owned()).or_insert(value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::BackendId;

    #[test]
    fn parses_a_vector_by_label() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"m","instance":"127.0.0.1:1","job":"ric"},"value":[1700000000.5,"0.25"]},
            {"metric":{"instance":"127.0.0.1:2"},"value":[1700000000.5,"NaN"]},
            {"metric":{"job":"x"},"value":[1,"1"]}]}}"#;
        let m = parse_vector(body, "instance").expect("parse");
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("127.0.0.1:1"), Some(&0.25));
        assert!(m.get("127.0.0.1:2").is_some_and(|v| v.is_nan()));
    }

    #[test]
    fn rejects_errors_and_other_shapes() {
        for body in [
            "not json",
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"instance":"a"},"value":[1,2]}]}}"#,
        ] {
            assert!(
                matches!(parse_vector(body, "instance"), Err(ProbeError::Promql(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn templates_and_urls() {
        let c = PromqlConfig {
            value_template: "ric-{id}@{host}/{port}".into(),
            ..PromqlConfig::default()
        };
        let t = Target::new(BackendId(7), "10.1.2.3", 9100).expect("url");
        assert_eq!(c.label_value(&t), "ric-7@10.1.2.3/9100");
        assert_eq!(
            PromqlConfig::default().label_value(&t),
            "10.1.2.3:9100".to_owned()
        );
        assert_eq!(
            PromqlConfig::default().query_url(r#"m{q="0.99"}"#),
            "http://127.0.0.1:9090/api/v1/query?query=m%7Bq%3D%220.99%22%7D"
        );
    }
}
