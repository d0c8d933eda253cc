//! A PostgreSQL server of a test's own, for tests that restart it (never
//! the shared one): started from the system's PostgreSQL binaries, with its
//! data in a temporary directory, reached through its own socket.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// Creates and starts a server on a free port.
    pub fn start() -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL's server binaries are not under /usr/lib/postgresql")?
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("pg_ctl").exists())
            .max()
            .context("no PostgreSQL version with pg_ctl")?;
        let dir =
            std::env::temp_dir().join(format!("rapport-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        let server = Self {
            bin,
            dir,
            port: crate::process::free_port()?.port(),
        };
        if running_as_root() {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(&server.dir))?;
        }
        let data = server.data();
        server.run_pg(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
        )?;
        server.pg_ctl(&["start"])?;
        Ok(server)
    }

    /// The URL of its `postgres` database as the superuser.
    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres?host={}",
            self.port,
            self.dir.display()
        )
    }

    /// Restarts it: every connection is cut, then new ones are accepted.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["restart", "-m", "fast"])
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// `pg_ctl <action>` on its data, waiting for the action to finish:
    /// loopback and its own socket only, room for a whole stack.
    fn pg_ctl(&self, action: &[&str]) -> anyhow::Result<()> {
        let data = self.data();
        let log = self.dir.join("postgres.log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let mut args = vec!["-D", &data, "-l", &log, "-w"];
        args.extend_from_slice(action);
        if action[0] != "stop" {
            args.extend(["-o", &options]);
        }
        self.run_pg("pg_ctl", &args)
    }

    /// Runs one of its binaries, as the `postgres` user when this is root
    /// (PostgreSQL refuses to run as root).
    fn run_pg(&self, binary: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(binary);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        run(command.args(args))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
