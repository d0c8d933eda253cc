//! A service binary run as a child process, as it is deployed: for
//! benchmarks that measure it on its own, and for tests that stop it with
//! a signal or kill it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub struct ServiceProcess {
    child: Child,
    pub addr: SocketAddr,
    pub channel: Channel,
}

impl ServiceProcess {
    /// Starts `binary` (built in the same target directory as the running
    /// program: `make test` and `make bench` build them first) with `env`,
    /// listening on a free loopback port, and waits until it is serving.
    pub async fn start(binary: &str, env: &[(&str, String)]) -> anyhow::Result<Self> {
        Self::start_at(binary, free_port()?, env).await
    }

    /// [`ServiceProcess::start`] on `addr`, such as the address of a
    /// process this one replaces.
    pub async fn start_at(
        binary: &str,
        addr: SocketAddr,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        Self::launch(binary, addr, env, None).await
    }

    /// [`ServiceProcess::start_at`], its log lines (standard output)
    /// appended to `log` when given.
    async fn launch(
        binary: &str,
        addr: SocketAddr,
        env: &[(&str, String)],
        log: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let path = sibling_binary(binary)?;
        let mut command = Command::new(&path);
        command
            .arg("--listen-addr")
            .arg(addr.to_string())
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .kill_on_drop(true);
        if let Some(log) = log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("opening {}", log.display()))?;
            command.stdout(file);
        }
        let child = command
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

    /// Sends `signal` (SIGTERM to stop it as a platform does, SIGKILL to
    /// kill it mid-work).
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid()?)?;
        kill(Pid::from_raw(pid), signal)?;
        Ok(())
    }

    /// Waits for the process to exit; `true` when it exited successfully.
    pub async fn wait(&mut self) -> anyhow::Result<bool> {
        Ok(self.child.wait().await?.success())
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
        cpu_time_of(self.pid()?)
    }

    /// Resident set size from /proc, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// The highest resident set size since the start or the last
    /// [`ServiceProcess::reset_peak_rss`], in KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmHWM:")
    }

    /// Starts measuring the peak resident set size afresh (Linux
    /// `clear_refs`), so a peak can be taken over one piece of work.
    pub fn reset_peak_rss(&self) -> anyhow::Result<()> {
        let pid = self.pid()?;
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
        Ok(())
    }

    fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .with_context(|| format!("no {field} in /proc status"))
    }
}

/// `name` next to the running program, or one directory up (a test runs
/// from `target/<profile>/deps`).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the program has a directory")?;
    [dir.join(name), dir.join("..").join(name)]
        .into_iter()
        .find(|path| path.exists())
        .with_context(|| {
            format!(
                "{name} is missing next to {}: build the binaries first (make test and make bench do)",
                exe.display()
            )
        })
}

/// A loopback address no one listens on right now.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The operator key of a [`ProcessStack`]'s gateway.
pub const STACK_OPERATOR_KEY: &str = "rapport-test-operator-key-0123456789abcdef";

/// The whole suite as processes on one database: contacts, feedback
/// following it, segmentation following both, and the gateway in front of
/// them, as `make run` starts it.
pub struct ProcessStack {
    pub gateway: ServiceProcess,
    pub segmentation: ServiceProcess,
    pub feedback: ServiceProcess,
    pub contacts: ServiceProcess,
    /// Declared last, so dropped last: the processes stop before it goes.
    pub db: crate::TestDatabase,
    extra: Vec<(&'static str, String)>,
    /// Where each process's log lines go (`<dir>/<service>.log`), if not
    /// to the test's own output.
    logs: Option<PathBuf>,
}

impl ProcessStack {
    /// Starts the services on `db`, with `extra` settings (such as
    /// `RAPPORT_DATABASE_MAX_CONNECTIONS`) given to each after the stack's
    /// own; the gateway's limits are far above what a test sends.
    pub async fn start(
        db: crate::TestDatabase,
        extra: &[(&'static str, String)],
    ) -> anyhow::Result<Self> {
        Self::start_logging(db, extra, None).await
    }

    /// [`ProcessStack::start`], each process's log lines written to
    /// `<logs>/<service>.log` when `logs` is given.
    pub async fn start_logging(
        db: crate::TestDatabase,
        extra: &[(&'static str, String)],
        logs: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let log = |name: &str| log_file(logs.as_deref(), name);
        let extra = extra.to_vec();
        let contacts = ServiceProcess::launch(
            "rapport-contacts",
            free_port()?,
            &env(&db, "contacts", &[], &extra),
            log("contacts").as_deref(),
        )
        .await?;
        let feedback = ServiceProcess::launch(
            "rapport-feedback",
            free_port()?,
            &env(&db, "feedback", &feedback_env(&contacts), &extra),
            log("feedback").as_deref(),
        )
        .await?;
        let segmentation = ServiceProcess::launch(
            "rapport-segmentation",
            free_port()?,
            &env(
                &db,
                "segmentation",
                &segmentation_env(&contacts, &feedback),
                &extra,
            ),
            log("segmentation").as_deref(),
        )
        .await?;
        let upstreams = [&contacts, &feedback, &segmentation];
        let gateway = ServiceProcess::launch(
            "rapport-gateway",
            free_port()?,
            &env(&db, "gateway", &gateway_env(upstreams), &extra),
            log("gateway").as_deref(),
        )
        .await?;
        Ok(Self {
            gateway,
            segmentation,
            feedback,
            contacts,
            db,
            extra,
            logs,
        })
    }

    fn log(&self, name: &str) -> Option<PathBuf> {
        log_file(self.logs.as_deref(), name)
    }

    /// Stops every process with SIGTERM, as a platform does, and waits for
    /// each to exit (flushing what it buffered, such as telemetry).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        for process in [
            &mut self.gateway,
            &mut self.segmentation,
            &mut self.feedback,
            &mut self.contacts,
        ] {
            stop(process, Signal::SIGTERM).await?;
        }
        Ok(())
    }

    /// Stops the contacts process with `signal` (SIGTERM as a platform
    /// does, SIGKILL as a crash does), waits for it to exit, and starts a
    /// new one on its address, as a rolling restart does. Returns whether
    /// the old one exited cleanly.
    pub async fn restart_contacts(&mut self, signal: Signal) -> anyhow::Result<bool> {
        let clean = stop(&mut self.contacts, signal).await?;
        self.contacts = self.relaunch("contacts", self.contacts.addr, &[]).await?;
        Ok(clean)
    }

    /// [`ProcessStack::restart_contacts`] for the feedback service.
    pub async fn restart_feedback(&mut self, signal: Signal) -> anyhow::Result<bool> {
        let clean = stop(&mut self.feedback, signal).await?;
        let own = feedback_env(&self.contacts);
        self.feedback = self.relaunch("feedback", self.feedback.addr, &own).await?;
        Ok(clean)
    }

    /// [`ProcessStack::restart_contacts`] for the segmentation service.
    pub async fn restart_segmentation(&mut self, signal: Signal) -> anyhow::Result<bool> {
        let clean = stop(&mut self.segmentation, signal).await?;
        let own = segmentation_env(&self.contacts, &self.feedback);
        let addr = self.segmentation.addr;
        self.segmentation = self.relaunch("segmentation", addr, &own).await?;
        Ok(clean)
    }

    /// [`ProcessStack::restart_contacts`] for the gateway.
    pub async fn restart_gateway(&mut self, signal: Signal) -> anyhow::Result<bool> {
        let clean = stop(&mut self.gateway, signal).await?;
        let own = gateway_env([&self.contacts, &self.feedback, &self.segmentation]);
        self.gateway = self.relaunch("gateway", self.gateway.addr, &own).await?;
        Ok(clean)
    }

    /// Starts `rapport-<name>` on `addr` with the stack's settings and its
    /// `own`.
    async fn relaunch(
        &self,
        name: &str,
        addr: SocketAddr,
        own: &[(&'static str, String)],
    ) -> anyhow::Result<ServiceProcess> {
        let env = env(&self.db, name, own, &self.extra);
        ServiceProcess::launch(
            &format!("rapport-{name}"),
            addr,
            &env,
            self.log(name).as_deref(),
        )
        .await
    }
}

/// Where the process `name` writes its log lines, when they go to `logs`.
/// CPU time (user and system) process `pid` has used, from /proc.
pub fn cpu_time_of(pid: u32) -> anyhow::Result<Duration> {
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

fn log_file(logs: Option<&Path>, name: &str) -> Option<PathBuf> {
    logs.map(|dir| dir.join(format!("{name}.log")))
}

async fn stop(process: &mut ServiceProcess, signal: Signal) -> anyhow::Result<bool> {
    process.signal(signal)?;
    process.wait().await
}

fn feedback_env(contacts: &ServiceProcess) -> Vec<(&'static str, String)> {
    vec![("RAPPORT_CONTACTS_URL", format!("http://{}", contacts.addr))]
}

fn segmentation_env(
    contacts: &ServiceProcess,
    feedback: &ServiceProcess,
) -> Vec<(&'static str, String)> {
    vec![
        ("RAPPORT_CONTACTS_URL", format!("http://{}", contacts.addr)),
        ("RAPPORT_FEEDBACK_URL", format!("http://{}", feedback.addr)),
    ]
}

/// The gateway's settings, routing to contacts, feedback and segmentation.
fn gateway_env(
    [contacts, feedback, segmentation]: [&ServiceProcess; 3],
) -> Vec<(&'static str, String)> {
    let high = || "1000000".to_owned();
    vec![
        ("RAPPORT_OPERATOR_KEY", STACK_OPERATOR_KEY.to_owned()),
        (
            "RAPPORT_UPSTREAMS",
            format!(
                "contacts=http://{},feedback=http://{},segmentation=http://{}",
                contacts.addr, feedback.addr, segmentation.addr
            ),
        ),
        ("RAPPORT_TENANT_RATE_PER_SECOND", high()),
        ("RAPPORT_TENANT_RATE_BURST", high()),
        ("RAPPORT_KEY_RATE_PER_SECOND", high()),
        ("RAPPORT_KEY_RATE_BURST", high()),
        ("RAPPORT_PUBLIC_RATE_PER_SECOND", high()),
        ("RAPPORT_PUBLIC_RATE_BURST", high()),
        ("RAPPORT_PUBLIC_TOKEN_RATE_PER_SECOND", high()),
        ("RAPPORT_PUBLIC_TOKEN_RATE_BURST", high()),
        ("RAPPORT_UNAUTHENTICATED_RATE_PER_SECOND", high()),
        ("RAPPORT_UNAUTHENTICATED_RATE_BURST", high()),
        ("RAPPORT_TENANT_MAX_IN_FLIGHT", "1024".to_owned()),
    ]
}

/// What the service `name` runs with: its role on `db`, migrations by the
/// admin, the test secret and test controls, then `own` and `extra`.
fn env(
    db: &crate::TestDatabase,
    name: &str,
    own: &[(&'static str, String)],
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DATABASE_URL", db.url(Some(&format!("rapport_{name}")))),
        ("RAPPORT_MIGRATE_DATABASE_URL", db.url(None)),
        ("RAPPORT_IDENTITY_KEY", crate::identity_key(name)),
        ("RAPPORT_TRUSTED_ISSUERS", crate::trusted_issuers()),
        ("RAPPORT_TEST_CONTROLS", "true".to_owned()),
        ("RAPPORT_SHUTDOWN_GRACE_MS", "10000".to_owned()),
    ];
    env.extend_from_slice(own);
    env.extend_from_slice(extra);
    env
}
