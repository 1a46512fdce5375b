//! The host's NVIDIA GPUs, and the environment that shows a node's GPUs to its tasks.
//!
//! Discovery runs `nvidia-smi --query-gpu=index,uuid,name,memory.total
//! --format=csv,noheader,nounits`. No `nvidia-smi`, a failing one (no driver, "No devices were
//! found") or output that does not parse all mean zero GPUs, with a debug (or warning) log line:
//! a machine without GPUs is normal. `OPENBATCH_GPU_DISCOVERY_CMD`, a shell command that prints
//! the same CSV, replaces `nvidia-smi` (for tests, and for hosts where it lives elsewhere).
//!
//! Tasks see their node's GPUs through `CUDA_VISIBLE_DEVICES` and `NVIDIA_VISIBLE_DEVICES`,
//! both set to the GPUs' UUIDs: an index means different GPUs to `nvidia-smi` (PCI bus order)
//! and to CUDA (fastest first, unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`), a UUID means one GPU to
//! both. Inside the task, frameworks number the visible GPUs from 0 as usual.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

pub use openbatch_api::agent::GpuInfo;

/// Replaces `nvidia-smi` for discovery: a shell command printing the same CSV.
pub const DISCOVERY_CMD_ENV: &str = "OPENBATCH_GPU_DISCOVERY_CMD";
/// The arguments that make `nvidia-smi` print what [`parse`] reads.
pub const NVIDIA_SMI_ARGS: &[&str] = &[
    "--query-gpu=index,uuid,name,memory.total",
    "--format=csv,noheader,nounits",
];
/// A wedged driver can make `nvidia-smi` hang; discovery gives up after this long.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Parse `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`.
///
/// One GPU per non-blank line: `index, uuid, name, memory MiB`, fields separated by commas with
/// any whitespace around them. A name that contains commas is kept whole (the first two and the
/// last fields are the others). A memory of `[N/A]` reads as 0. A malformed line, or two lines
/// with the same index or UUID, make the whole output an error: a GPU that might be
/// misidentified is not handed out. The result is sorted by index.
pub fn parse(text: &str) -> Result<Vec<GpuInfo>, String> {
    let mut gpus: Vec<GpuInfo> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: '{line}'", n + 1);
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 4 {
            return Err(bad("expected 'index, uuid, name, memory'"));
        }
        let index: u32 = fields[0]
            .parse()
            .map_err(|_| bad("the index is not a number"))?;
        let uuid = fields[1];
        if uuid.is_empty() || uuid.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(bad("the UUID is empty"));
        }
        let memory = fields[fields.len() - 1];
        let memory_mib: u64 = if memory.starts_with('[') {
            0 // [N/A], [Not Supported]
        } else {
            memory
                .parse::<f64>()
                .ok()
                .filter(|m| m.is_finite() && *m >= 0.0)
                .map(|m| m as u64)
                .ok_or_else(|| bad("the memory is not a number of MiB"))?
        };
        let name = fields[2..fields.len() - 1].join(", ");
        if gpus.iter().any(|g| g.index == index || g.uuid == uuid) {
            return Err(bad("the same GPU is listed twice"));
        }
        gpus.push(GpuInfo {
            index,
            uuid: uuid.to_string(),
            name,
            memory_mib,
        });
    }
    gpus.sort_by_key(|g| g.index);
    Ok(gpus)
}

/// The host's GPUs (see the module comment); empty when there are none or discovery fails.
/// Blocking: it runs a process (call it from a blocking context in async code).
pub fn discover() -> Vec<GpuInfo> {
    let custom = std::env::var(DISCOVERY_CMD_ENV)
        .ok()
        .filter(|c| !c.trim().is_empty());
    let (what, mut cmd) = match &custom {
        Some(c) => {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(c);
            (format!("{DISCOVERY_CMD_ENV} ({c})"), cmd)
        }
        None => {
            let mut cmd = Command::new("nvidia-smi");
            cmd.args(NVIDIA_SMI_ARGS);
            ("nvidia-smi".to_string(), cmd)
        }
    };
    match run(&mut cmd).and_then(|out| parse(&out)) {
        Ok(gpus) => gpus,
        Err(e) => {
            // No nvidia-smi is the common case of a machine without GPUs; output that does not
            // parse is worth a warning.
            if custom.is_some() || e.starts_with("line ") {
                tracing::warn!(command = %what, error = %e, "GPU discovery failed; this machine counts as having no GPUs");
            } else {
                tracing::debug!(command = %what, error = %e, "no GPUs found");
            }
            Vec::new()
        }
    }
}

/// Run a discovery command: its stdout, or why it failed.
fn run(cmd: &mut Command) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start it: {e}"))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((child.wait(), out, err));
    });
    match rx.recv_timeout(DISCOVERY_TIMEOUT) {
        Ok((Ok(status), out, _)) if status.success() => Ok(out),
        Ok((Ok(status), out, err)) => {
            let said = format!("{} {}", out.trim(), err.trim());
            Err(format!("it exited with {status}: {}", said.trim()))
        }
        Ok((Err(e), ..)) => Err(format!("waiting for it failed: {e}")),
        Err(_) => {
            #[allow(unsafe_code)]
            // SAFETY: kill(2) of the child we started; the reader thread reaps it.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            Err(format!("it did not answer within {DISCOVERY_TIMEOUT:?}"))
        }
    }
}

/// The variables that show exactly `gpus` to a task: `CUDA_VISIBLE_DEVICES` and
/// `NVIDIA_VISIBLE_DEVICES`, the UUIDs joined by commas. With no GPUs, CUDA sees none (an empty
/// list) and the NVIDIA container runtime mounts none (`none`).
pub fn visible_env(gpus: &[GpuInfo]) -> Vec<(String, String)> {
    let uuids: Vec<&str> = gpus.iter().map(|g| g.uuid.as_str()).collect();
    let list = uuids.join(",");
    let nvidia = if gpus.is_empty() {
        "none".to_string()
    } else {
        list.clone()
    };
    vec![
        ("CUDA_VISIBLE_DEVICES".into(), list),
        ("NVIDIA_VISIBLE_DEVICES".into(), nvidia),
    ]
}

/// `0: NVIDIA H100 80GB HBM3 (GPU-..., 81559 MiB)`, for logs and the CLI.
pub fn describe(g: &GpuInfo) -> String {
    format!("{}: {} ({}, {} MiB)", g.index, g.name, g.uuid, g.memory_mib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_csv() {
        let out = "0, GPU-3b1d4a6e-1111-2222-3333-444455556666, NVIDIA H100 80GB HBM3, 81559\n\
                   1, GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee, Tesla V100-SXM2-16GB, 16384\n";
        let gpus = parse(out).unwrap();
        assert_eq!(gpus.len(), 2);
        assert_eq!(
            gpus[0],
            GpuInfo {
                index: 0,
                uuid: "GPU-3b1d4a6e-1111-2222-3333-444455556666".into(),
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_mib: 81559,
            }
        );
        assert_eq!(gpus[1].name, "Tesla V100-SXM2-16GB");
        assert_eq!(parse("").unwrap(), Vec::new());
        assert_eq!(parse("\n  \n").unwrap(), Vec::new());
    }

    #[test]
    fn odd_whitespace_commas_in_names_and_order() {
        let out = "\r\n  1 ,GPU-b,   Fake, Model X  ,\t2048 \r\n\n0,GPU-a,Plain,  1024.0\r\n";
        let gpus = parse(out).unwrap();
        assert_eq!(gpus.iter().map(|g| g.index).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(gpus[0].memory_mib, 1024);
        assert_eq!(gpus[1].uuid, "GPU-b");
        assert_eq!(gpus[1].name, "Fake, Model X");
        assert_eq!(gpus[1].memory_mib, 2048);
        let na = parse("0, MIG-1234, NVIDIA A100 MIG 1g.5gb, [N/A]").unwrap();
        assert_eq!((na[0].uuid.as_str(), na[0].memory_mib), ("MIG-1234", 0));
    }

    #[test]
    fn malformed_output_is_an_error() {
        for bad in [
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            "No devices were found",
            "0, GPU-a, Name",
            "x, GPU-a, Name, 10",
            "0, , Name, 10",
            "0, GPU-a, Name, lots",
            "0, GPU-a, Name, -5",
            "0, GPU-a, A, 10\n0, GPU-b, B, 10",
            "0, GPU-a, A, 10\n1, GPU-a, B, 10",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.starts_with("line "), "{bad}: {e}");
        }
    }

    #[test]
    fn a_failing_or_missing_command_is_no_gpus() {
        let mut missing = Command::new("/nonexistent/nvidia-smi");
        assert!(run(&mut missing).unwrap_err().contains("could not start"));
        let mut failing = Command::new("/bin/sh");
        failing.args(["-c", "echo 'No devices were found'; exit 6"]);
        let e = run(&mut failing).unwrap_err();
        assert!(e.contains("No devices were found"), "{e}");
        let mut ok = Command::new("/bin/sh");
        ok.args(["-c", "printf '0, GPU-x, Fake, 1\\n'"]);
        assert_eq!(parse(&run(&mut ok).unwrap()).unwrap()[0].uuid, "GPU-x");
    }

    #[test]
    fn visible_env_names_uuids_or_nothing() {
        let gpus = parse("3, GPU-c, C, 1\n1, GPU-a, A, 1").unwrap();
        assert_eq!(
            visible_env(&gpus),
            vec![
                (
                    "CUDA_VISIBLE_DEVICES".to_string(),
                    "GPU-a,GPU-c".to_string()
                ),
                (
                    "NVIDIA_VISIBLE_DEVICES".to_string(),
                    "GPU-a,GPU-c".to_string()
                ),
            ]
        );
        assert_eq!(
            visible_env(&[]),
            vec![
                ("CUDA_VISIBLE_DEVICES".to_string(), String::new()),
                ("NVIDIA_VISIBLE_DEVICES".to_string(), "none".to_string()),
            ]
        );
    }
}
