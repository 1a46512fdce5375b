//! The node's resource metrics, as autoscale formulas read them (`$CPUPercent`,
//! `$MemoryBytes`, `$DiskBytes`, `$DiskReadBytes`, ... `$NetworkOutBytes`).
//!
//! Read from Linux's `/proc` and `statvfs(2)` of the node root: CPU use since the last report,
//! memory in use, disk in use on the node root's file system, and disk and network traffic since
//! the last report (deltas of the kernel's counters). These are the machine's numbers: a node
//! that shares its machine with other nodes (local nodes on the server's machine) reports the
//! machine's use.

use std::path::{Path, PathBuf};
use std::time::Instant;

use openbatch_api::agent::NodeMetrics;

/// Cumulative counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counters {
    cpu_busy: u64,
    cpu_total: u64,
    disk_read_bytes: u64,
    disk_write_bytes: u64,
    disk_read_ops: u64,
    disk_write_ops: u64,
    net_in: u64,
    net_out: u64,
}

/// Takes a [`NodeMetrics`] each time it is asked, with the traffic since the previous one.
#[derive(Debug)]
pub(crate) struct Sampler {
    root: PathBuf,
    last: Counters,
    last_at: Instant,
}

impl Sampler {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            // From zero: the first report covers the time since the machine booted.
            last: Counters::default(),
            last_at: Instant::now(),
        }
    }

    pub(crate) fn sample(&mut self) -> NodeMetrics {
        let now = read_counters();
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let total = d(now.cpu_total, self.last.cpu_total);
        let cpu_percent = if total == 0 {
            0.0
        } else {
            100.0 * d(now.cpu_busy, self.last.cpu_busy) as f64 / total as f64
        };
        let (memory_total, memory_used) = read_to("/proc/meminfo")
            .map(|t| parse_meminfo(&t))
            .unwrap_or((0, 0));
        let (disk_total, disk_used) = disk_usage(&self.root).unwrap_or((0, 0));
        let m = NodeMetrics {
            interval_secs: self.last_at.elapsed().as_secs_f64(),
            cpu_percent,
            memory_used_bytes: memory_used,
            memory_total_bytes: memory_total,
            disk_used_bytes: disk_used,
            disk_total_bytes: disk_total,
            disk_read_bytes: d(now.disk_read_bytes, self.last.disk_read_bytes),
            disk_write_bytes: d(now.disk_write_bytes, self.last.disk_write_bytes),
            disk_read_ops: d(now.disk_read_ops, self.last.disk_read_ops),
            disk_write_ops: d(now.disk_write_ops, self.last.disk_write_ops),
            network_in_bytes: d(now.net_in, self.last.net_in),
            network_out_bytes: d(now.net_out, self.last.net_out),
        };
        self.last = now;
        self.last_at = Instant::now();
        m
    }
}

fn read_to(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_counters() -> Counters {
    let (cpu_busy, cpu_total) = read_to("/proc/stat")
        .and_then(|t| parse_cpu(&t))
        .unwrap_or((0, 0));
    let disk = read_to("/proc/diskstats")
        .map(|t| parse_diskstats(&t))
        .unwrap_or_default();
    let (net_in, net_out) = read_to("/proc/net/dev")
        .map(|t| parse_net_dev(&t))
        .unwrap_or((0, 0));
    Counters {
        cpu_busy,
        cpu_total,
        disk_read_bytes: disk.0,
        disk_write_bytes: disk.1,
        disk_read_ops: disk.2,
        disk_write_ops: disk.3,
        net_in,
        net_out,
    }
}

/// (busy, total) jiffies from the `cpu` line of `/proc/stat`: idle and iowait are not busy.
fn parse_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user/nice).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// (total, used) bytes: used is `MemTotal - MemAvailable`.
fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    let total = field("MemTotal:").unwrap_or(0);
    let available = field("MemAvailable:")
        .or_else(|| field("MemFree:"))
        .unwrap_or(0);
    (total, total.saturating_sub(available))
}

/// (read bytes, written bytes, read ops, write ops) over whole disks: partitions, loop and RAM
/// devices are skipped so nothing is counted twice.
fn parse_diskstats(text: &str) -> (u64, u64, u64, u64) {
    let mut out = (0, 0, 0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let name = f[2];
        if !is_whole_disk(name) {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        // Fields: reads completed (3), sectors read (5), writes completed (7), sectors written
        // (9); sectors are 512 bytes whatever the device's block size.
        out.0 += n(5) * 512;
        out.1 += n(9) * 512;
        out.2 += n(3);
        out.3 += n(7);
    }
    out
}

fn is_whole_disk(name: &str) -> bool {
    if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("dm-") {
        return false;
    }
    // nvme0n1 is a disk, nvme0n1p1 a partition; sda a disk, sda1 a partition; vda likewise.
    if name.starts_with("nvme") || name.starts_with("mmcblk") {
        return !name.contains('p') || !name.rsplit('p').next().is_some_and(is_digits);
    }
    !name.ends_with(|c: char| c.is_ascii_digit())
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// (received, sent) bytes over every interface but loopback.
fn parse_net_dev(text: &str) -> (u64, u64) {
    let mut out = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() >= 9 {
            out.0 += f[0];
            out.1 += f[8];
        }
    }
    out
}

/// (total, used) bytes of the file system holding `path`.
fn disk_usage(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    #[allow(unsafe_code)]
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory of the
    // right type; statvfs only writes into it, and we read it only after it succeeded.
    let st = unsafe {
        if libc::statvfs(c.as_ptr(), st.as_mut_ptr()) != 0 {
            return None;
        }
        st.assume_init()
    };
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let free = st.f_bfree as u64 * frsize;
    Some((total, total.saturating_sub(free)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_busy_and_total_from_proc_stat() {
        let stat = "cpu  100 5 50 800 45 0 0 0 0 0\ncpu0 50 2 25 400 20 0 0 0 0 0\nintr 1\n";
        assert_eq!(parse_cpu(stat), Some((155, 1000)));
        assert_eq!(parse_cpu("intr 1\n"), None);
    }

    #[test]
    fn memory_in_use_is_total_minus_available() {
        let m = "MemTotal:       16000 kB\nMemFree:         1000 kB\nMemAvailable:    6000 kB\n";
        assert_eq!(parse_meminfo(m), (16000 * 1024, 10000 * 1024));
    }

    #[test]
    fn disk_traffic_counts_whole_disks_once() {
        let t = "\
 253       0 vda 10 0 200 0 20 0 400 0 0 0 0
 253       1 vda1 9 0 180 0 19 0 380 0 0 0 0
 259       0 nvme0n1 1 0 8 0 2 0 16 0 0 0 0
 259       1 nvme0n1p1 1 0 8 0 2 0 16 0 0 0 0
   7       0 loop0 5 0 50 0 0 0 0 0 0 0 0
";
        assert_eq!(
            parse_diskstats(t),
            ((200 + 8) * 512, (400 + 16) * 512, 11, 22)
        );
    }

    #[test]
    fn network_traffic_skips_loopback() {
        let t = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:  5000      50    0    0    0     0          0         0     3000      30    0    0    0     0       0          0
";
        assert_eq!(parse_net_dev(t), (5000, 3000));
    }

    #[test]
    fn a_sample_of_this_machine_is_plausible() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sampler::new(dir.path());
        let m = s.sample();
        assert!((0.0..=100.0).contains(&m.cpu_percent), "{m:?}");
        assert!(m.memory_total_bytes > 0 && m.memory_used_bytes <= m.memory_total_bytes);
        assert!(m.disk_total_bytes > 0 && m.disk_used_bytes <= m.disk_total_bytes);
    }
}
