//! `wsx bench --server-pid PID`: the server's CPU time over the measured window and its
//! resident memory at the end, read from `/proc` (Linux only).
//!
//! CPU time is `utime + stime` from `/proc/PID/stat` (the 14th and 15th fields, in clock
//! ticks), sampled when the measured window starts and when it ends; memory is `VmRSS` from
//! `/proc/PID/status` at the end. A sample that cannot be read is reported as missing
//! (`null` in JSON) with a warning, never as an error of the run.

use anyhow::{bail, Context as _};

/// What was measured of the server over the window; `None` where a read failed.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerUsage {
    /// CPU seconds (user + system) the server used during the window.
    pub cpu_seconds: Option<f64>,
    /// The server's resident memory at the end of the window, in KiB.
    pub rss_kib: Option<u64>,
}

impl ServerUsage {
    /// CPU seconds per million of `count` things done (messages, deliveries); `None` when
    /// the CPU time is unknown or nothing was done.
    pub fn cpu_s_per_million(&self, count: u64) -> Option<f64> {
        let cpu = self.cpu_seconds?;
        (count > 0).then(|| cpu / count as f64 * 1e6)
    }

    /// The report's line of text: CPU seconds per million of `what`, and RSS.
    pub fn line(&self, count: u64, what: &str) -> String {
        let cpu = match self.cpu_s_per_million(count) {
            Some(c) => format!("{c:.3} CPU s per million {what}"),
            None => "CPU unknown".to_string(),
        };
        let rss = match self.rss_kib {
            Some(r) => format!("RSS {r} KiB"),
            None => "RSS unknown".to_string(),
        };
        format!("server: {cpu}, {rss}")
    }
}

/// Samples one process: create it before the window (it reads the clock tick rate once),
/// call [`Sampler::start`] when the window opens and [`Sampler::finish`] when it closes.
pub struct Sampler {
    pid: u32,
    ticks_per_second: f64,
    start_ticks: Option<u64>,
}

impl Sampler {
    /// A sampler of process `pid`. Warns now if the process cannot be read at all.
    pub fn new(pid: u32) -> Self {
        if let Err(e) = cpu_ticks(pid) {
            tracing::warn!("--server-pid {pid}: {e:#}; server usage will be reported as null");
        }
        Sampler {
            pid,
            ticks_per_second: clock_ticks_per_second(),
            start_ticks: None,
        }
    }

    /// The window opens: the first CPU sample.
    pub fn start(&mut self) {
        self.start_ticks = cpu_ticks(self.pid).ok();
    }

    /// The window closes: the second CPU sample and the RSS.
    pub fn finish(&self) -> ServerUsage {
        let cpu_seconds = match (self.start_ticks, cpu_ticks(self.pid)) {
            (Some(a), Ok(b)) => Some(b.saturating_sub(a) as f64 / self.ticks_per_second),
            (None, _) => {
                tracing::warn!(
                    "--server-pid {}: no CPU sample at the start of the window",
                    self.pid
                );
                None
            }
            (_, Err(e)) => {
                tracing::warn!("--server-pid {}: {e:#}", self.pid);
                None
            }
        };
        let rss_kib = rss_kib(self.pid)
            .map_err(|e| tracing::warn!("--server-pid {}: {e:#}", self.pid))
            .ok();
        ServerUsage {
            cpu_seconds,
            rss_kib,
        }
    }
}

/// The kernel's clock tick rate (`USER_HZ`), the unit of `/proc/PID/stat`'s times. libc is
/// not a dependency of this crate, so `getconf CLK_TCK` is asked once; if that fails, 100
/// (what Linux uses on every common architecture) is assumed, with a warning.
fn clock_ticks_per_second() -> f64 {
    let asked = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&t| t > 0);
    match asked {
        Some(t) => f64::from(t),
        None => {
            tracing::warn!("`getconf CLK_TCK` failed; assuming 100 clock ticks per second");
            100.0
        }
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path} (Linux only)"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("unexpected contents of {path}"))
}

/// utime + stime from the text of `/proc/PID/stat`. The command name (2nd field, in
/// parentheses) may itself contain spaces and parentheses, so the fields are counted from
/// the last `)`: the state is the 3rd field overall, utime and stime the 14th and 15th.
fn parse_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        bail!("no `)` after the command name");
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is the 3rd field overall.
    let (Some(utime), Some(stime)) = (fields.get(14 - 3), fields.get(15 - 3)) else {
        bail!("fewer than 15 fields");
    };
    Ok(utime.parse::<u64>()? + stime.parse::<u64>()?)
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path} (Linux only)"))?;
    parse_rss_kib(&status).with_context(|| format!("no VmRSS in {path}"))
}

/// The `VmRSS:  1234 kB` line of `/proc/PID/status` (absent for a zombie).
fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with a space and a parenthesis in it; utime 1234, stime 56.
        let stat = "4242 (wsx (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 \
                    2 0 100 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 1290);
        assert!(parse_cpu_ticks("4242 (wsx) S 1 2").is_err());
        assert!(parse_cpu_ticks("garbage").is_err());
    }

    #[test]
    fn rss_comes_from_the_vmrss_line() {
        let status = "Name:\twsx\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t2\n";
        assert_eq!(parse_rss_kib(status), Some(5120));
        assert_eq!(parse_rss_kib("Name:\tzombie\n"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_ok());
        assert!(rss_kib(pid).unwrap() > 0);
        let usage = ServerUsage {
            cpu_seconds: Some(0.5),
            rss_kib: Some(1),
        };
        assert_eq!(usage.cpu_s_per_million(1_000_000), Some(0.5));
        assert_eq!(usage.cpu_s_per_million(0), None);
    }
}
