//! Processes as Linux's `/proc/PID/stat` describes them (proc(5)): the one reader of that
//! file for `pupa-host`'s tests and the end-to-end tests (who is a child of whom, whether a
//! process is gone, how much CPU it used).

/// The fields of `/proc/PID/stat` that are used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Command name (field 2, without its parentheses).
    pub comm: String,
    /// State letter (`R`, `S`, `Z`, …).
    pub state: char,
    /// Parent PID.
    pub ppid: u32,
    /// Process group.
    pub pgrp: u32,
    /// User plus system CPU time, in clock ticks (fields 14 and 15).
    pub cpu_ticks: u64,
}

/// `/proc/PID/stat` of `pid`, or None when there is no such process.
pub fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: it ends at the last ") ".
    let (head, rest) = text.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1.to_string();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Stat {
        comm,
        state: f.first()?.chars().next()?,
        ppid: u32::try_from(num(1)?).ok()?,
        pgrp: u32::try_from(num(2)?).ok()?,
        cpu_ticks: num(11)?.checked_add(num(12)?)?,
    })
}

/// Whether `pid` is gone: no such process, or a zombie waiting to be reaped.
pub fn gone(pid: u32) -> bool {
    stat(pid).is_none_or(|s| s.state == 'Z')
}

/// The children of `ppid` whose command name starts with `prefix` (zombies included: a child
/// that ran and died still shows until it is reaped).
pub fn children(ppid: u32, prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == ppid && s.comm.starts_with(prefix)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_back() {
        let me = stat(std::process::id()).expect("own stat");
        assert!(matches!(me.state, 'R' | 'S'));
        assert!(!gone(std::process::id()));
        assert_eq!(stat(me.ppid).map(|_| ()), Some(()));
    }
}
