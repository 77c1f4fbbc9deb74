//! Why one probe of one backend failed.

/// One failed probe. Every variant counts as a failure of that backend;
/// [`kind`](ProbeError::kind) is the bounded metric label.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The configured URL is not `http://host[:port]/path` (TLS is not
    /// supported); a configuration mistake.
    #[error("invalid probe URL: {0}")]
    InvalidUrl(&'static str),
    /// TCP connect failed: the endpoint is down or unreachable.
    #[error("connect failed")]
    Connect(#[source] std::sync::Arc<std::io::Error>),
    /// No complete response within the per-request timeout.
    #[error("timed out")]
    Timeout,
    /// The HTTP exchange failed (connection reset, malformed response).
    #[error("HTTP exchange failed")]
    Http(#[source] std::sync::Arc<hyper::Error>),
    /// The server answered with a non-2xx status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body was larger than `max_body`.
    #[error("response body too large")]
    BodyTooLarge,
    /// The body was not UTF-8.
    #[error("response body is not UTF-8")]
    NotUtf8,
    /// The response parsed but held none of the configured figures
    /// (wrong metric names, or a different exporter on that port).
    #[error("none of the configured metrics found ({bad_lines} unparsable lines)")]
    NoFigures { bad_lines: usize },
    /// A Prometheus API answer that is not `status: success` with a vector
    /// result, or whose JSON does not parse.
    #[error("Prometheus API: {0}")]
    Promql(&'static str),
}

impl ProbeError {
    /// Short, bounded name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeError::InvalidUrl(_) => "invalid_url",
            ProbeError::Connect(_) => "connect",
            ProbeError::Timeout => "timeout",
            ProbeError::Http(_) => "http",
            ProbeError::Status(_) => "status",
            ProbeError::BodyTooLarge => "body_too_large",
            ProbeError::NotUtf8 => "not_utf8",
            ProbeError::NoFigures { .. } => "no_figures",
            ProbeError::Promql(_) => "promql",
        }
    }
}
