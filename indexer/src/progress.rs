//! Backfill progress: a bar on a terminal, a structured log line every few seconds
//! otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub(crate) struct Progress {
    bar: bool,
    started: Instant,
    last_shown: Instant,
    start_block: u64,
    logs_at_start: u64,
}

impl Progress {
    pub(crate) fn new(start_block: u64, enabled: bool) -> Self {
        let now = Instant::now();
        Progress {
            bar: enabled && std::io::stderr().is_terminal(),
            started: now,
            last_shown: now,
            start_block,
            logs_at_start: 0,
        }
    }

    pub(crate) fn update(
        &mut self,
        indexer: &str,
        next_block: u64,
        target: u64,
        head: u64,
        logs: u64,
    ) {
        let interval = if self.bar {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last_shown.elapsed() < interval {
            return;
        }
        self.last_shown = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (logs - self.logs_at_start) as f64 / elapsed;
        let total = target.saturating_sub(self.start_block).max(1);
        let done = next_block.saturating_sub(self.start_block).min(total);
        let lag = head.saturating_sub(next_block.saturating_sub(1));
        if self.bar {
            let width = 30;
            let filled = (done * width / total) as usize;
            let bar = format!(
                "{}{}",
                "#".repeat(filled),
                ".".repeat(width as usize - filled)
            );
            eprint!(
                "\r  {indexer} [{bar}] block {}/{target}  {logs} logs  {rate:.0} logs/s  lag {lag} blocks ",
                next_block.saturating_sub(1)
            );
            let _ = std::io::stderr().flush();
        } else {
            tracing::info!(
                indexer,
                block = next_block.saturating_sub(1),
                target,
                head,
                lag_blocks = lag,
                logs,
                logs_per_second = rate as u64,
                "indexing"
            );
        }
    }

    pub(crate) fn finish(&self) {
        if self.bar {
            eprintln!();
        }
    }
}
