//! The agent's object-store request counts and CPU time, scraped from its Prometheus endpoint
//! before and after a run. A bench reports them as "n/a" rather than failing when scraping does not work:
//! the throughput numbers stand on their own.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The counter of object-store requests, labelled `op` (and `outcome`, summed over). The one
/// place its name lives: the agent (`shale-storage`) registers it as `shale_storage_requests`.
pub(crate) const OBJECT_STORE_REQUESTS_METRIC: &str = "shale_storage_requests_total";

/// Object-store requests by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct StoreCounts {
    pub(crate) put: u64,
    pub(crate) get: u64,
    pub(crate) get_range: u64,
}

impl StoreCounts {
    /// Requests made between `before` and `self`.
    pub(crate) fn since(self, before: StoreCounts) -> StoreCounts {
        StoreCounts {
            put: self.put.saturating_sub(before.put),
            get: self.get.saturating_sub(before.get),
            get_range: self.get_range.saturating_sub(before.get_range),
        }
    }
}

/// The agent's process CPU counter (user + system seconds), from its process collector.
pub(crate) const PROCESS_CPU_METRIC: &str = "process_cpu_seconds_total";

/// What one scrape read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct AgentSample {
    pub(crate) store: StoreCounts,
    /// `None` when the endpoint has no process metrics (an agent on another OS).
    pub(crate) cpu_seconds: Option<f64>,
}

impl AgentSample {
    /// What the agent spent between `before` and `self`.
    pub(crate) fn since(self, before: AgentSample) -> AgentSample {
        AgentSample {
            store: self.store.since(before.store),
            cpu_seconds: self
                .cpu_seconds
                .zip(before.cpu_seconds)
                .map(|(after, before)| (after - before).max(0.0)),
        }
    }
}

/// The value of an unlabelled sample `name`.
pub(crate) fn parse_gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Fetches `url` and reads the counts; the error says why, for a debug log.
pub(crate) async fn scrape(url: &str) -> Result<AgentSample, String> {
    let client = reqwest::Client::builder()
        // The endpoint is almost always local; a proxy from the environment would only hurt.
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| error.to_string())?;
    let text = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|error| error.to_string())?
        .text()
        .await
        .map_err(|error| error.to_string())?;
    let store =
        parse(&text).ok_or_else(|| format!("{url} has no {OBJECT_STORE_REQUESTS_METRIC}"))?;
    Ok(AgentSample {
        store,
        cpu_seconds: parse_gauge(&text, PROCESS_CPU_METRIC),
    })
}

/// Sums the counter's samples by `op`; `None` when the metric is absent. A declared family
/// without samples (no request made yet) counts as zero.
pub(crate) fn parse(text: &str) -> Option<StoreCounts> {
    let mut by_op: BTreeMap<String, f64> = BTreeMap::new();
    let family = OBJECT_STORE_REQUESTS_METRIC
        .strip_suffix("_total")
        .unwrap_or(OBJECT_STORE_REQUESTS_METRIC);
    let declared = format!("# TYPE {family} ");
    let mut found = false;
    for line in text.lines() {
        if line.starts_with(&declared) {
            found = true;
            continue;
        }
        let Some(rest) = line.strip_prefix(OBJECT_STORE_REQUESTS_METRIC) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            // A longer metric name sharing the prefix.
            None if !rest.starts_with(' ') => continue,
            None => ("", rest),
        };
        // "value" or "value timestamp".
        let Some(Ok(value)) = value.split_whitespace().next().map(str::parse::<f64>) else {
            continue;
        };
        found = true;
        if let Some(op) = label(labels, "op") {
            *by_op.entry(op).or_default() += value;
        }
    }
    let count = |op: &str| by_op.get(op).map_or(0, |value| value.round() as u64);
    found.then(|| StoreCounts {
        put: count("put"),
        get: count("get"),
        get_range: count("get_range"),
    })
}

/// The value of `name` in a `a="x",b="y"` label set.
fn label(labels: &str, name: &str) -> Option<String> {
    let mut rest = labels;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let (key, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => {
                    let (_, escaped) = chars.next()?;
                    value.push(if escaped == 'n' { '\n' } else { escaped });
                }
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# HELP shale_storage_requests Object-store requests by op and outcome; every attempt counts.
# TYPE shale_storage_requests counter
shale_storage_requests_total{op="put",outcome="ok"} 12
shale_storage_requests_total{op="put",outcome="error"} 1
shale_storage_requests_total{op="get_range",outcome="ok"} 3
shale_storage_requests_total{op="head",outcome="ok"} 4
shale_storage_requests_total_extra{op="put"} 99
shale_storage_request_duration_seconds_count{op="put"} 13
# EOF
"#;

    #[test]
    fn counts_are_summed_over_outcomes() {
        let counts = parse(SAMPLE).unwrap();
        assert_eq!(
            counts,
            StoreCounts {
                put: 13,
                get: 0,
                get_range: 3
            }
        );
    }

    #[test]
    fn a_declared_family_without_samples_is_zero() {
        let text = "# HELP shale_storage_requests Requests.\n# TYPE shale_storage_requests counter\n# EOF\n";
        assert_eq!(parse(text), Some(StoreCounts::default()));
    }

    #[test]
    fn a_missing_metric_is_none() {
        assert_eq!(parse("other_total 5\n"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn labels_with_escapes_and_timestamps_parse() {
        let text = format!(
            "{OBJECT_STORE_REQUESTS_METRIC}{{note=\"a,\\\"b\\\"\",op=\"get\"}} 7 1700000000000\n"
        );
        assert_eq!(parse(&text).unwrap().get, 7);
    }

    #[test]
    fn process_cpu_is_read_and_differenced() {
        let text = format!(
            "# TYPE process_cpu_seconds counter\n{PROCESS_CPU_METRIC}_x 9\n{PROCESS_CPU_METRIC} 12.5\n"
        );
        assert_eq!(parse_gauge(&text, PROCESS_CPU_METRIC), Some(12.5));
        assert_eq!(parse_gauge("", PROCESS_CPU_METRIC), None);
        let before = AgentSample {
            store: StoreCounts::default(),
            cpu_seconds: Some(2.0),
        };
        let after = AgentSample {
            store: StoreCounts::default(),
            cpu_seconds: Some(12.5),
        };
        assert_eq!(after.since(before).cpu_seconds, Some(10.5));
        let unknown = AgentSample::default();
        assert_eq!(after.since(unknown).cpu_seconds, None);
    }

    #[test]
    fn differences_never_go_negative() {
        let before = StoreCounts {
            put: 5,
            get: 1,
            get_range: 0,
        };
        let after = StoreCounts {
            put: 8,
            get: 0,
            get_range: 2,
        };
        assert_eq!(
            after.since(before),
            StoreCounts {
                put: 3,
                get: 0,
                get_range: 2
            }
        );
    }
}
