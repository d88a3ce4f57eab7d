//! The process metrics every Prometheus user expects, under their standard names, read from
//! Linux's `/proc` at each scrape. Elsewhere, or when a file cannot be read, the metrics it
//! would give are left out rather than reported as zero.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc`'s CPU times. Linux reports them in USER_HZ, which is
/// 100 on every architecture it supports, whatever the kernel's own tick rate.
const USER_HZ: f64 = 100.0;

/// Reads `/proc/self` when scraped.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

/// One reading of the process's numbers.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_memory_bytes: Option<i64>,
    pub(crate) virtual_memory_bytes: Option<i64>,
    pub(crate) start_time_seconds: Option<f64>,
    pub(crate) open_fds: Option<i64>,
    pub(crate) max_fds: Option<i64>,
}

impl ProcessStats {
    pub(crate) fn read() -> Self {
        let mut stats = Self::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(fields) = stat_fields(&stat)
        {
            stats.cpu_seconds = fields.cpu_ticks.map(|ticks| ticks as f64 / USER_HZ);
            stats.virtual_memory_bytes = fields.vsize;
            let boot_time = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|text| boot_time(&text));
            if let (Some(boot), Some(start)) = (boot_time, fields.start_ticks) {
                stats.start_time_seconds = Some(boot as f64 + start as f64 / USER_HZ);
            }
        }
        stats.resident_memory_bytes = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|text| resident_bytes(&text));
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as i64);
        stats.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| max_open_files(&text));
        stats
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = ProcessStats::read();
        if let Some(seconds) = stats.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stats.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stats.virtual_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                stats.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                stats.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        if let Some(start) = stats.start_time_seconds {
            let gauge = ConstGauge::new(start);
            gauge.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// The fields of `/proc/self/stat` the metrics need.
#[derive(Debug, PartialEq)]
struct StatFields {
    cpu_ticks: Option<u64>,
    start_ticks: Option<u64>,
    vsize: Option<i64>,
}

fn stat_fields(stat: &str) -> Option<StatFields> {
    // The command name (field 2) is in parentheses and may hold spaces or ')'; the fields
    // after the last ')' start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3).and_then(|f| f.parse::<u64>().ok());
    let cpu_ticks = match (field(14), field(15)) {
        (Some(user), Some(system)) => Some(user + system),
        _ => None,
    };
    Some(StatFields {
        cpu_ticks,
        start_ticks: field(22),
        vsize: field(23).and_then(|bytes| i64::try_from(bytes).ok()),
    })
}

fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

fn resident_bytes(status: &str) -> Option<i64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: i64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    // Soft limit first; "unlimited" has no number to give.
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_survives_odd_command_names() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    9 0 123456 987654321 2048 18446744073709551615";
        assert_eq!(
            stat_fields(stat),
            Some(StatFields {
                cpu_ticks: Some(300),
                start_ticks: Some(123_456),
                vsize: Some(987_654_321),
            })
        );
    }

    #[test]
    fn status_limits_and_boot_time_parse() {
        assert_eq!(
            resident_bytes("Name:\tshale\nVmRSS:\t   2048 kB\nVmSwap: 0 kB\n"),
            Some(2_097_152)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    #[allow(clippy::disallowed_methods)] // compares with the real clock: /proc is real too
    fn this_process_is_measured() {
        let stats = ProcessStats::read();
        assert!(stats.resident_memory_bytes.is_some_and(|bytes| bytes > 0));
        assert!(stats.virtual_memory_bytes.is_some_and(|bytes| bytes > 0));
        assert!(stats.open_fds.is_some_and(|fds| fds > 0));
        assert!(stats.max_fds.is_some_and(|fds| fds > 0));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        let started = stats.start_time_seconds.expect("start time");
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(stats.cpu_seconds.is_some());
    }
}
