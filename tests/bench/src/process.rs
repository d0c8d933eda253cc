//! Runs a service binary as a child process for the benchmarks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub struct ServiceProcess {
    child: Child,
    pub addr: SocketAddr,
    pub channel: Channel,
}

impl ServiceProcess {
    /// Starts `binary` (built next to this benchmark) with `env`, listening
    /// on a free loopback port named by `listen_env`, and waits until it is
    /// serving.
    pub async fn start(
        binary: &str,
        listen_env: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let path = sibling_binary(binary)?;
        let addr = free_port()?;
        let child = Command::new(&path)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(listen_env, addr.to_string())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let channel = Channel::from_shared(format!("http://{addr}"))?.connect_lazy();
        let process = Self {
            child,
            addr,
            channel,
        };
        process.wait_until_serving().await?;
        Ok(process)
    }

    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        for _ in 0..200 {
            if HealthClient::new(self.channel.clone())
                .check(HealthCheckRequest::default())
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the service at {} did not start serving", self.addr)
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the service has exited")
    }

    /// CPU time (user and system) the process has used, from /proc.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let pid = self.pid()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name, which may contain spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("a /proc stat line")?
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // Linux reports in USER_HZ, 100 per second on every common platform.
        Ok(Duration::from_millis(ticks * 10))
    }

    /// Resident set size from /proc, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .context("no VmRSS in /proc status")
    }
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("the benchmark has a directory")?
        .join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it first (make bench does)",
        path.display()
    );
    Ok(path)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
