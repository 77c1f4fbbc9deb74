//! The HTTP/1.1 GET the probes use: hyper's bare client connection over a
//! tokio `TcpStream`, one connection per request, the whole exchange under
//! one deadline. No TLS, no redirects, no keep-alive: a probe every second
//! per backend does not need a pool, and a fresh connection also tests that
//! the endpoint still accepts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::ProbeError;
use crate::session::BackendId;

/// One backend to probe and the URL of its metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub id: BackendId,
    pub url: Uri,
}

impl Target {
    /// The default URL, `http://<host>:<port>/metrics`.
    pub fn new(id: BackendId, host: &str, port: u16) -> Result<Target, ProbeError> {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Self::with_url(id, &format!("http://{host}:{port}/metrics"))
    }

    /// An explicit `http://` URL.
    pub fn with_url(id: BackendId, url: &str) -> Result<Target, ProbeError> {
        let url: Uri = url
            .parse()
            .map_err(|_| ProbeError::InvalidUrl("does not parse"))?;
        check_url(&url)?;
        Ok(Target { id, url })
    }

    /// The URL's host, without IPv6 brackets.
    pub fn host(&self) -> &str {
        let h = self.url.host().unwrap_or_default();
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h)
    }

    /// The URL's port (80 if absent).
    pub fn port(&self) -> u16 {
        self.url.port_u16().unwrap_or(80)
    }

    /// `host:port` as written in the URL (Prometheus's default `instance`).
    pub fn authority(&self) -> String {
        match self.url.authority() {
            Some(a) if a.port().is_some() => a.as_str().to_owned(),
            Some(a) => format!("{}:80", a.as_str()),
            None => String::new(),
        }
    }
}

fn check_url(url: &Uri) -> Result<(), ProbeError> {
    if url.scheme_str() != Some("http") {
        return Err(ProbeError::InvalidUrl("scheme must be http"));
    }
    if url.host().is_none_or(str::is_empty) {
        return Err(ProbeError::InvalidUrl("no host"));
    }
    Ok(())
}

/// An IP address as the host part of a URL (IPv6 in brackets).
pub fn url_host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}

/// `http://<ip>:<port><path>`: the metrics URL of a backend at `ip`.
pub fn metrics_url(ip: std::net::IpAddr, port: u16, path: &str) -> String {
    format!("http://{}:{port}{path}", url_host(ip))
}

/// GETs `url` and returns the body as text, all within `timeout`.
pub async fn get(url: &Uri, timeout: Duration, max_body: usize) -> Result<String, ProbeError> {
    get_with_token(url, timeout, max_body, None).await
}

/// [`get`] with an `Authorization: Bearer` header when `token` is given.
pub async fn get_with_token(
    url: &Uri,
    timeout: Duration,
    max_body: usize,
    token: Option<&str>,
) -> Result<String, ProbeError> {
    tokio::time::timeout(timeout, get_inner(url, max_body, token))
        .await
        .map_err(|_| ProbeError::Timeout)?
}

async fn get_inner(url: &Uri, max_body: usize, token: Option<&str>) -> Result<String, ProbeError> {
    check_url(url)?;
    let authority = url
        .authority()
        .ok_or(ProbeError::InvalidUrl("no host"))?
        .clone();
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| ProbeError::Connect(Arc::new(e)))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeError::Http(Arc::new(e)))?;
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::get(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::USER_AGENT, "e2lb-probe")
        .header(hyper::header::ACCEPT, "text/plain, application/json");
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|_| ProbeError::InvalidUrl("bad request target"))?;
    let fetch = async move {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ProbeError::Http(Arc::new(e)))?;
        if !resp.status().is_success() {
            return Err(ProbeError::Status(resp.status().as_u16()));
        }
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(h) => ProbeError::Http(Arc::new(*h)),
                Err(_) => ProbeError::BodyTooLarge,
            })?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| ProbeError::NotUtf8)
    };
    let mut fetch = std::pin::pin!(fetch);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        biased;
        r = &mut fetch => return r,
        c = &mut conn => {
            if let Err(e) = c {
                return Err(ProbeError::Http(Arc::new(e)));
            }
        }
    }
    fetch.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls() {
        let t = Target::new(BackendId(0), "10.0.0.1", 9100).expect("url");
        assert_eq!(t.url.to_string(), "http://10.0.0.1:9100/metrics");
        assert_eq!((t.host(), t.port()), ("10.0.0.1", 9100));
        assert_eq!(t.authority(), "10.0.0.1:9100");
        let t = Target::new(BackendId(1), "::1", 80).expect("v6");
        assert_eq!(t.host(), "::1");
        assert_eq!(t.authority(), "[::1]:80");
        let t = Target::with_url(BackendId(2), "http://ric/m").expect("no port");
        assert_eq!((t.port(), t.authority()), (80, "ric:80".to_owned()));
        assert!(Target::with_url(BackendId(3), "https://ric/m").is_err());
        assert!(Target::with_url(BackendId(3), "/metrics").is_err());
    }
}
