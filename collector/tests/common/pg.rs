//! A throwaway PostgreSQL server for the tests: Debian's server programs (installed by `cargo
//! xtask setup`), a data folder under the system temp folder, a free port on 127.0.0.1, run
//! as the `postgres` user when the tests run as root (initdb refuses root). A test binary starts
//! one shared server at its first use ([`shared`]) and stops and removes it when it exits; a
//! test that stops or restarts its server starts one of its own ([`PgServer::start`]), stopped
//! and removed when dropped. Each test gets a database of its own ([`PgServer::database`]).
//!
//! No test is skipped when PostgreSQL is missing: it fails, saying what to install.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A running (or stopped) throwaway server.
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// The user and group the server runs as, when we are root.
    owner: Option<(u32, u32)>,
    /// The write end of the watchdog's input: when this process ends, however it ends (a
    /// panic, an exit with statics alive, a kill), the pipe closes and the watchdog stops the
    /// server and removes its folder.
    watchdog: Option<std::process::Child>,
}

/// The folder of the newest installed PostgreSQL's server programs.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl): run `cargo xtask setup`, \
             which installs Debian's `postgresql` package, then test again"
        ),
    }
}

/// The `postgres` user's uid and gid when we run as root (the server refuses to run as root).
fn owner() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    if me != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .unwrap_or_else(|| panic!("we run as root and there is no `postgres` user to run the test server as: install Debian's `postgresql` package (`cargo xtask setup`)"));
    let f: Vec<&str> = line.split(':').collect();
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

/// Where the servers' folders go: the system temp folder, unless the server's user cannot reach
/// it (a private `TMPDIR`, mode 0700), then `/tmp`.
fn base_dir(owner: Option<(u32, u32)>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::temp_dir();
    let reachable = |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    if owner.is_none() || base.ancestors().all(reachable) {
        base
    } else {
        PathBuf::from("/tmp")
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn must(cmd: &mut Command) {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgServer {
    /// Makes a new cluster and starts it.
    pub fn start(tag: &str) -> PgServer {
        static N: AtomicU64 = AtomicU64::new(0);
        let owner = owner();
        let dir = base_dir(owner).join(format!(
            "utt-pg-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let mut s = PgServer {
            dir,
            bin: bin_dir(),
            port: 0,
            owner,
            watchdog: None,
        };
        s.watchdog = Some(s.watchdog());
        must(
            s.as_owner("initdb")
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "utt",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale",
                    "C",
                    "-D",
                ])
                .arg(s.data()),
        );
        // A port that was free a moment ago; another process may take it first: try again.
        for _ in 0..5 {
            s.port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            if s.try_start() {
                return s;
            }
        }
        panic!("the test PostgreSQL server did not start: {}", s.log());
    }

    /// Starts the watchdog: a shell, as the cluster's owner, that waits for the end of its
    /// input, then stops the server and removes its folder.
    fn watchdog(&self) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "cat >/dev/null; \"$0\" -D \"$1\" stop -m immediate -w; rm -rf \"$2\"",
        ])
        .arg(self.bin.join("pg_ctl"))
        .arg(self.data())
        .arg(&self.dir)
        .current_dir(&self.dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.spawn().expect("starting the test server's watchdog (sh)")
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// One of the server's programs, run as the user that owns the cluster.
    fn as_owner(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(&self.dir);
        cmd
    }

    fn try_start(&self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            self.dir.display()
        );
        run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .args(["start", "-w", "-t", "60"]))
        .status
        .success()
    }

    /// Starts the server again on its port (after [`PgServer::stop`]).
    pub fn start_again(&self) {
        assert!(
            self.try_start(),
            "the test PostgreSQL server did not start again: {}",
            self.log()
        );
    }

    /// Stops the server (fast shutdown: sessions are cut, nothing committed is lost).
    pub fn stop(&self) {
        must(
            self.as_owner("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["stop", "-m", "fast", "-w"]),
        );
    }

    /// The URL of database `db` as the `utt` user.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://utt@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn database(&self, tag: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "utt_{}_{}_{}",
            tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        must(
            Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-U", "utt", "-p", &self.port.to_string()])
                .arg(&name),
        );
        self.url(&name)
    }

    /// Stops the server at once and removes its folder.
    fn remove(&self) {
        let _ = run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate", "-w"]));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.remove();
        if let Some(mut w) = self.watchdog.take() {
            drop(w.stdin.take());
            let _ = w.wait();
        }
    }
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

/// The test binary's shared server, started at the first call. Statics are never dropped: its
/// watchdog stops and removes it when the process exits.
pub fn shared() -> &'static PgServer {
    SHARED.get_or_init(|| PgServer::start("shared"))
}

/// A fresh database on the shared server; its URL.
pub fn database(tag: &str) -> String {
    shared().database(tag)
}
