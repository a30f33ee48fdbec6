//! The operator process's memory and open descriptors, from `/proc`.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// The operator process as `/proc` shows it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcSample {
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
    pub(crate) fds: usize,
}

fn proc_sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    Some(ProcSample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        fds,
    })
}

/// Samples `/proc/<pid>` every 100 ms and keeps the peaks.
pub(crate) struct ProcSampler {
    pid: Option<u32>,
    peak: Arc<Mutex<Option<ProcSample>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProcSampler {
    pub(crate) fn start(pid: Option<u32>) -> Self {
        let peak = Arc::new(Mutex::new(None));
        let task = pid.map(|pid| {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(s) = proc_sample(pid) {
                        let mut peak = peak.lock().unwrap_or_else(|p| p.into_inner());
                        let p = peak.get_or_insert(s);
                        p.rss_kib = p.rss_kib.max(s.rss_kib);
                        p.hwm_kib = p.hwm_kib.max(s.hwm_kib);
                        p.fds = p.fds.max(s.fds);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        Self { pid, peak, task }
    }

    pub(crate) fn now(&self) -> Option<ProcSample> {
        self.pid.and_then(proc_sample)
    }

    pub(crate) fn stop(mut self) -> Option<ProcSample> {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        *self.peak.lock().unwrap_or_else(|p| p.into_inner())
    }
}
