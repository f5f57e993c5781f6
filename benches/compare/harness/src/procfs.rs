//! What the harness reads about a server process from `/proc`: CPU time, resident memory, open descriptors.

use std::fs;

/// CPU time a process has used, by two clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    /// Sum over the process's live threads of `/proc/PID/task/TID/schedstat`'s first field (time on a CPU, in
    /// ns). Precise, but a thread that has exited takes its time with it.
    pub sched_ns: Option<u64>,
    /// `utime + stime` from `/proc/PID/stat`, in clock ticks: every thread the process ever had, at tick
    /// resolution (10 ms at the usual 100 Hz).
    pub stat_ticks: Option<u64>,
}

pub fn cpu(pid: u32) -> Cpu {
    Cpu { sched_ns: sched_ns(pid), stat_ticks: stat_ticks(pid) }
}

fn sched_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        // A thread may exit between the listing and the read; skip it.
        let Ok(text) = fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) {
            total += ns;
            any = true;
        }
    }
    any.then_some(total)
}

fn stat_ticks(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; fields are counted after its closing one.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3 of the whole line, so utime (14) and stime (15) are at 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field of `/proc/PID/status`, such as `VmRSS`, in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

pub fn open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

pub fn threads(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/task")).ok()?.count())
}

pub fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter says it is gone.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text
            .rfind(')')
            .and_then(|i| text[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(alive(pid));
        assert!(vm_rss_kib(pid).unwrap() > 0);
        assert!(open_fds(pid).unwrap() >= 3);
        assert!(threads(pid).unwrap() >= 1);
        let cpu = cpu(pid);
        assert!(cpu.stat_ticks.is_some());
        assert!(cpu.sched_ns.is_some());
    }
}
