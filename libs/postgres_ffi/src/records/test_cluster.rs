//! Test helper: a throwaway PostgreSQL 15 cluster in a temp dir (initdb,
//! start on a free loopback port, run SQL with psql, stop).
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! server programs run as the `postgres` OS user via `runuser` and the temp
//! dir is handed to that user. Tests skip (with a printed note) when the
//! PostgreSQL 15 binaries are not installed.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where the Debian/Ubuntu packages install PostgreSQL 15.
pub(crate) const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// A cluster that lives as long as this value; dropping it stops the server.
pub(crate) struct TestCluster {
    dir: tempfile::TempDir,
    /// The data directory.
    pub datadir: PathBuf,
    port: Option<u16>,
    as_postgres_user: bool,
}

/// Whether the PostgreSQL 15 binaries are installed; prints a skip note if not.
pub(crate) fn pg_available(test: &str) -> bool {
    let ok = Path::new(PG_BIN_DIR).join("initdb").exists();
    if !ok {
        println!("skipping {test}: PostgreSQL 15 binaries not found in {PG_BIN_DIR}");
    }
    ok
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn postgres_user_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(out.status.success(), "OS user `postgres` is missing");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl TestCluster {
    /// `initdb` a new cluster (trust auth, user `postgres`, no fsync) with
    /// `extra_args`, or `None` when PostgreSQL 15 is not installed.
    pub(crate) fn init(test: &str, extra_args: &[&str]) -> Option<TestCluster> {
        if !pg_available(test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("pgffi-")
            .tempdir()
            .expect("temp dir");
        let as_postgres_user = running_as_root();
        if as_postgres_user {
            let (uid, gid) = postgres_user_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let datadir = dir.path().join("data");
        let cluster = TestCluster {
            dir,
            datadir,
            port: None,
            as_postgres_user,
        };
        let mut args = vec![
            "-D",
            cluster.datadir.to_str().expect("utf-8 path"),
            "-N",
            "-A",
            "trust",
            "-U",
            "postgres",
        ];
        args.extend_from_slice(extra_args);
        cluster.run_server_program("initdb", &args);
        Some(cluster)
    }

    /// A new directory in the cluster's temp dir that the server may write
    /// (for tablespaces).
    pub(crate) fn server_owned_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir(&path).expect("create dir");
        if self.as_postgres_user {
            let (uid, gid) = postgres_user_ids();
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown dir");
        }
        path
    }

    /// Path of a PostgreSQL program.
    pub(crate) fn bin(prog: &str) -> PathBuf {
        Path::new(PG_BIN_DIR).join(prog)
    }

    /// Run a program that must not run as root (initdb, pg_ctl); panics
    /// with its output if it fails.
    fn run_server_program(&self, prog: &str, args: &[&str]) -> Output {
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(Self::bin(prog));
            c
        } else {
            Command::new(Self::bin(prog))
        };
        let out = cmd
            .args(args)
            .env("TZ", "UTC")
            .output()
            .unwrap_or_else(|e| panic!("run {prog}: {e}"));
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Run a read-only client program (pg_controldata, pg_waldump) with
    /// `TZ=UTC`; returns its output whatever the exit status.
    pub(crate) fn run_tool(prog: &str, args: &[&str]) -> Output {
        Command::new(Self::bin(prog))
            .args(args)
            .env("TZ", "UTC")
            .output()
            .unwrap_or_else(|e| panic!("run {prog}: {e}"))
    }

    /// Append settings to `postgresql.conf` and start the server on a free
    /// loopback port.
    pub(crate) fn start(&mut self, extra_conf: &str) {
        let port = free_port();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{}'\nfsync = off\n{extra_conf}\n",
            self.dir.path().display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.datadir.join("postgresql.conf"))
            .expect("open postgresql.conf");
        f.write_all(conf.as_bytes()).expect("write postgresql.conf");
        let log = self.dir.path().join("server.log");
        self.run_server_program(
            "pg_ctl",
            &[
                "-D",
                self.datadir.to_str().expect("utf-8 path"),
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        self.port = Some(port);
    }

    /// Run SQL (a script, stopping at the first error) in database `db`;
    /// returns psql's unaligned, tuples-only output.
    pub(crate) fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.expect("server is running");
        let mut child = Command::new(Self::bin("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "postgres", "-d", db, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .expect("psql stdin")
            .write_all(sql.as_bytes())
            .expect("write SQL to psql");
        let out = child.wait_with_output().expect("wait for psql");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stop the server with a clean shutdown (writes a shutdown checkpoint).
    pub(crate) fn stop(&mut self) {
        if self.port.take().is_some() {
            self.run_server_program(
                "pg_ctl",
                &[
                    "-D",
                    self.datadir.to_str().expect("utf-8 path"),
                    "-w",
                    "-t",
                    "30",
                    "-m",
                    "fast",
                    "stop",
                ],
            );
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.port.take().is_some() {
            // Best effort: a failed test must not leave a server behind.
            let mut cmd = if self.as_postgres_user {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(Self::bin("pg_ctl"));
                c
            } else {
                Command::new(Self::bin("pg_ctl"))
            };
            let _ = cmd
                .arg("-D")
                .arg(&self.datadir)
                .args(["-w", "-m", "immediate", "stop"])
                .output();
        }
    }
}
