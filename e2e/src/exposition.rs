//! Reading a Prometheus text exposition (the operator's `/metrics`, an API server's), with
//! `prometheus-parse`, under the names samples are scraped as.

/// One sample of a Prometheus text exposition, under the name it is scraped as: a histogram `x`
/// has samples `x_bucket` (one per `le`), `x_sum` and `x_count`.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
    /// The type (`# TYPE`) of the sample's metric family; `x_sum` of a histogram `x` is a
    /// histogram sample.
    pub family_type: prometheus_parse::SampleType,
}

/// Every sample of a Prometheus text exposition (parsed by `prometheus-parse`).
pub fn parse_exposition(exposition: &str) -> Vec<MetricSample> {
    use prometheus_parse::{SampleType, Scrape, Value};
    use std::collections::{BTreeMap, HashMap};

    // Lines from a &str never fail to read, so neither does the parse.
    let scrape = Scrape::parse(exposition.lines().map(|l| Ok(l.to_string())))
        .map(|s| s.samples)
        .unwrap_or_default();
    // prometheus-parse folds a histogram's (summary's) buckets (quantiles) into one sample named
    // after the family, and leaves its `_sum` and `_count` untyped.
    let folded: HashMap<&str, SampleType> = scrape
        .iter()
        .filter_map(|s| match s.value {
            Value::Histogram(_) => Some((s.metric.as_str(), SampleType::Histogram)),
            Value::Summary(_) => Some((s.metric.as_str(), SampleType::Summary)),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for sample in &scrape {
        let labels: BTreeMap<String, String> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let one = |name: String, family_type, extra: Option<(&str, f64)>, value| {
            let mut labels = labels.clone();
            if let Some((label, bound)) = extra {
                labels.insert(label.to_string(), go_float(bound));
            }
            MetricSample {
                name,
                labels,
                value,
                family_type,
            }
        };
        match &sample.value {
            Value::Counter(v) => {
                out.push(one(sample.metric.clone(), SampleType::Counter, None, *v))
            }
            Value::Gauge(v) => out.push(one(sample.metric.clone(), SampleType::Gauge, None, *v)),
            Value::Untyped(v) => {
                let family_type = ["_sum", "_count"]
                    .iter()
                    .find_map(|suffix| folded.get(sample.metric.strip_suffix(suffix)?))
                    .copied()
                    .unwrap_or(SampleType::Untyped);
                out.push(one(sample.metric.clone(), family_type, None, *v));
            }
            Value::Histogram(buckets) => out.extend(buckets.iter().map(|b| {
                one(
                    format!("{}_bucket", sample.metric),
                    SampleType::Histogram,
                    Some(("le", b.less_than)),
                    b.count,
                )
            })),
            Value::Summary(quantiles) => out.extend(quantiles.iter().map(|q| {
                one(
                    sample.metric.clone(),
                    SampleType::Summary,
                    Some(("quantile", q.quantile)),
                    q.count,
                )
            })),
        }
    }
    out
}

/// A float as the text exposition writes it (`+Inf` for the last bucket's bound).
fn go_float(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        v.to_string()
    }
}

/// Sum of the samples of `metric` (exact name) in a Prometheus text exposition whose labels
/// include every pair in `labels`.
pub fn sum_samples(exposition: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    parse_exposition(exposition)
        .iter()
        .filter(|s| s.name == metric)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).is_some_and(|value| value == v))
        })
        .map(|s| s.value)
        .sum()
}

/// Every metric name that has a sample in a Prometheus text exposition.
pub fn sample_names(exposition: &str) -> std::collections::BTreeSet<String> {
    parse_exposition(exposition)
        .into_iter()
        .map(|s| s.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x_total X.\n# TYPE x_total counter\nx_total{result=\"success\"} 3\nx_total{result=\"error\"} 1\ny 2.5\n";

    #[test]
    fn sums_matching_samples() {
        assert_eq!(sum_samples(TEXT, "x_total", &[]), 4.0);
        assert_eq!(sum_samples(TEXT, "x_total", &[("result", "success")]), 3.0);
        assert_eq!(sum_samples(TEXT, "y", &[]), 2.5);
        assert_eq!(sum_samples(TEXT, "z", &[]), 0.0);
        assert!(sample_names(TEXT).contains("x_total"));
    }

    const HISTOGRAM: &str = "# HELP h_seconds H.\n# TYPE h_seconds histogram\nh_seconds_bucket{op=\"get\",le=\"0.5\"} 1\nh_seconds_bucket{op=\"get\",le=\"+Inf\"} 3\nh_seconds_sum{op=\"get\"} 2.25\nh_seconds_count{op=\"get\"} 3\nh_seconds_bucket{op=\"put\",le=\"0.5\"} 0\nh_seconds_bucket{op=\"put\",le=\"+Inf\"} 2\nh_seconds_sum{op=\"put\"} 4\nh_seconds_count{op=\"put\"} 2\n# TYPE g gauge\ng{kind=\"a\"} 7\n";

    #[test]
    fn parses_histograms_with_labels_and_family_types() {
        use prometheus_parse::SampleType;
        let text = format!("{TEXT}{HISTOGRAM}");
        let samples = parse_exposition(&text);
        let family = |name: &str| {
            samples
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.family_type)
        };
        assert_eq!(family("x_total"), Some(SampleType::Counter));
        assert_eq!(family("y"), Some(SampleType::Untyped));
        assert_eq!(family("g"), Some(SampleType::Gauge));
        for name in ["h_seconds_bucket", "h_seconds_sum", "h_seconds_count"] {
            assert_eq!(family(name), Some(SampleType::Histogram), "{name}");
        }
        assert_eq!(family("h_seconds"), None);
        assert_eq!(sum_samples(&text, "h_seconds_count", &[("op", "put")]), 2.0);
        assert_eq!(sum_samples(&text, "h_seconds_count", &[]), 5.0);
        assert_eq!(sum_samples(&text, "h_seconds_sum", &[("op", "get")]), 2.25);
        assert_eq!(
            sum_samples(&text, "h_seconds_bucket", &[("op", "get"), ("le", "+Inf")]),
            3.0
        );
        assert_eq!(
            sum_samples(&text, "h_seconds_bucket", &[("op", "get"), ("le", "0.5")]),
            1.0
        );
        assert_eq!(sum_samples(&text, "g", &[("kind", "a")]), 7.0);
        assert_eq!(sum_samples(&text, "g", &[("kind", "b")]), 0.0);
        // A label must match by name and whole value, not as a substring.
        assert_eq!(sum_samples(&text, "x_total", &[("result", "succ")]), 0.0);
        assert_eq!(
            samples
                .iter()
                .filter(|s| s.name == "h_seconds_bucket")
                .count(),
            4
        );
        let names = sample_names(&text);
        for name in [
            "x_total",
            "y",
            "g",
            "h_seconds_bucket",
            "h_seconds_sum",
            "h_seconds_count",
        ] {
            assert!(names.contains(name), "{name} in {names:?}");
        }
        assert_eq!(names.len(), 6, "{names:?}");
    }
}
