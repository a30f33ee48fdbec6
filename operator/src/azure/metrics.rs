//! Request metrics for Azure calls. Labels are bounded: `operation` is one of five values and
//! `code` is an HTTP status (or `error` for transport failures). Identity and credential names
//! never become labels: they are unbounded and would explode the series count.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// The kinds of Azure call the backend makes (the `operation` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AzureOperation {
    Get,
    Put,
    Delete,
    List,
    Token,
}

impl AzureOperation {
    pub const ALL: [AzureOperation; 5] = [
        AzureOperation::Get,
        AzureOperation::Put,
        AzureOperation::Delete,
        AzureOperation::List,
        AzureOperation::Token,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AzureOperation::Get => "get",
            AzureOperation::Put => "put",
            AzureOperation::Delete => "delete",
            AzureOperation::List => "list",
            AzureOperation::Token => "token",
        }
    }
}

/// `code` label value for a request that got no HTTP answer.
pub const TRANSPORT_ERROR_CODE: &str = "error";

/// `tenant_identity_azure_requests_total{operation,code}` and
/// `tenant_identity_azure_request_duration_seconds{operation}`. Cheap to clone (the prometheus
/// vectors are reference-counted), so one instance is shared by every client.
#[derive(Clone, Debug)]
pub struct AzureRequestMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
}

impl AzureRequestMetrics {
    /// Create the metrics and register them with `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self::unregistered()?;
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        Ok(metrics)
    }

    /// The same metrics, not registered anywhere (for tools and tests that do not scrape).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "tenant_identity_azure_requests_total",
                "Requests to Azure (ARM and the Entra token endpoint) by operation and HTTP status code ('error' = no response).",
            ),
            &["operation", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tenant_identity_azure_request_duration_seconds",
                "Duration of requests to Azure by operation.",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["operation"],
        )?;
        // Series exist from the first scrape, so dashboards see zeros instead of gaps.
        for op in AzureOperation::ALL {
            duration.with_label_values(&[op.as_str()]);
        }
        Ok(AzureRequestMetrics { requests, duration })
    }

    /// Record one request: `code` is the HTTP status, or `None` for a transport failure.
    pub fn observe(&self, op: AzureOperation, code: Option<u16>, elapsed: Duration) {
        let code = code.map(|c| c.to_string());
        self.requests
            .with_label_values(&[op.as_str(), code.as_deref().unwrap_or(TRANSPORT_ERROR_CODE)])
            .inc();
        self.duration
            .with_label_values(&[op.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    /// Requests recorded so far for (`op`, `code`); for tests and diagnostics.
    pub fn count(&self, op: AzureOperation, code: &str) -> u64 {
        self.requests.with_label_values(&[op.as_str(), code]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_counts_with_bounded_labels() {
        let registry = Registry::new();
        let m = AzureRequestMetrics::register(&registry).expect("register");
        m.observe(AzureOperation::Put, Some(201), Duration::from_millis(20));
        m.observe(AzureOperation::Put, None, Duration::from_millis(20));
        assert_eq!(m.count(AzureOperation::Put, "201"), 1);
        assert_eq!(m.count(AzureOperation::Put, "error"), 1);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(names.contains(&"tenant_identity_azure_requests_total".to_string()));
        assert!(names.contains(&"tenant_identity_azure_request_duration_seconds".to_string()));
        // Registering twice in one registry is an error, not a silent duplicate.
        assert!(AzureRequestMetrics::register(&registry).is_err());
    }
}
