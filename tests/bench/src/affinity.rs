//! CPU placement for the run that gives the gateway a core of its own, as a
//! deployment gives it its own container: the gateway on the last core,
//! everything else (this load generator, the services, and the PostgreSQL
//! backends serving the benchmark database) on the others.

use nix::errno::Errno;
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// Restricts every thread of each of the processes `pids` to `cpus`.
/// Threads started later inherit the placement of the thread starting them.
pub fn place(pids: &[u32], cpus: std::ops::Range<usize>) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    for cpu in cpus {
        set.set(cpu)?;
    }
    for pid in pids {
        for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let Some(tid) = entry?.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            match sched_setaffinity(Pid::from_raw(tid), &set) {
                // A thread that ended since the directory was read is fine.
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(error) => anyhow::bail!("placing thread {tid} of process {pid}: {error}"),
            }
        }
    }
    Ok(())
}
