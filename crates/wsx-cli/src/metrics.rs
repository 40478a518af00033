//! `wsx serve --metrics`: the server's counters as Prometheus text (exposition format
//! 0.0.4), answered on plain HTTP `GET /metrics`.

use std::fmt::Write;
use wsx::{HttpResponse, MemoryBudget};

/// What `/metrics` reports.
pub struct Metrics {
    budget: Option<MemoryBudget>,
}

impl Metrics {
    /// Metrics of a server whose connections charge `budget` (if it has one).
    pub fn new(budget: Option<MemoryBudget>) -> Self {
        Metrics { budget }
    }

    /// The current figures, rendered.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(b) = &self.budget {
            let s = b.stats();
            let lines: [(&str, &str, &str, u64); 7] = [
                ("wsx_memory_budget_limit_bytes", "gauge", "The memory budget shared by all connections.", s.limit as u64),
                ("wsx_memory_budget_used_bytes", "gauge", "Bytes charged to the memory budget now: messages being received, queued output, compression state.", s.used as u64),
                ("wsx_memory_budget_holders", "gauge", "Connections charged anything now (each holds more than 16 KiB).", s.holders as u64),
                ("wsx_memory_budget_refused_messages_total", "counter", "Messages refused with close code 1009 because they would have passed the budget.", s.refused_messages),
                ("wsx_memory_budget_refused_connections_total", "counter", "Connections refused with HTTP 503 because 90% of the budget was spent.", s.refused_connections),
                ("wsx_memory_budget_paused_reads_total", "counter", "Times a connection holding a large share stopped reading while 75% of the budget was spent.", s.paused_reads),
                ("wsx_memory_budget_overload_closes_total", "counter", "Connections closed with 1013 after staying paused for the budget too long.", s.overload_closes),
            ];
            for (name, kind, help, value) in lines {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            }
        }
        out
    }

    /// The `/metrics` response.
    pub fn respond(&self) -> HttpResponse {
        HttpResponse::new(200, self.render())
            .with_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            .with_header("Cache-Control", "no-store")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_budget_figure() {
        let budget = MemoryBudget::new(1 << 20);
        budget.count_refused_connection();
        let text = Metrics::new(Some(budget)).render();
        assert!(
            text.contains("\nwsx_memory_budget_limit_bytes 1048576\n"),
            "{text}"
        );
        assert!(text.contains("\nwsx_memory_budget_refused_connections_total 1\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 7);
        assert!(Metrics::new(None).render().is_empty());
    }
}
