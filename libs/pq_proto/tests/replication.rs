//! The replication client against a real PostgreSQL 15 primary: every
//! authentication method, IDENTIFY_SYSTEM, slots, streaming WAL of a real
//! insert, standby status feedback, keepalives and cancellation.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pq_proto::{
    ConnConfig, ReplError, ReplicationConnection, ReplicationMessage, ReplicationStream,
};
use tokio_util::sync::CancellationToken;
use utils::lsn::Lsn;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const APP: &str = "pq_proto_test";
const SCRAM_PW: &str = "scram-Pa55";
const MD5_PW: &str = "md5-Pa55";
const PLAIN_PW: &str = "plain-Pa55";
const WRONG_PW: &str = "Wr0ngPa55word";

/// A PostgreSQL 15 primary in a temporary directory, stopped on drop (also
/// when the test fails).
struct PgServer {
    dir: tempfile::TempDir,
    port: u16,
    /// Run the binaries as the `postgres` OS user (we are root).
    as_postgres: bool,
}

impl PgServer {
    fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, bin: &str) -> Command {
        let path = Path::new(PG_BIN).join(bin);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn run(&self, bin: &str, args: &[&str]) {
        let out = self
            .command(bin)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {bin}: {e}"));
        assert!(
            out.status.success(),
            "{bin} {args:?} failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// initdb + configuration + start, or `None` when PostgreSQL 15 is not installed.
    fn start() -> Option<PgServer> {
        if !Path::new(PG_BIN).join("initdb").exists() || !Path::new(PG_BIN).join("pg_ctl").exists()
        {
            println!("SKIPPED: PostgreSQL 15 binaries not found in {PG_BIN}; the replication test did not run");
            return None;
        }
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::Builder::new()
            .prefix("pq_proto_pg")
            .tempdir()
            .unwrap();
        if as_postgres {
            let st = Command::new("chown")
                .args(["postgres:"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success(), "chown of the temp dir to postgres failed");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PgServer {
            dir,
            port,
            as_postgres,
        };
        let data = server.datadir();
        let data_s = data.to_str().unwrap();
        server.run(
            "initdb",
            &[
                "-D",
                data_s,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 4\nmax_replication_slots = 4\n\
             wal_sender_timeout = 2s\nfsync = off\nshared_buffers = 16MB\n",
            server.dir.path().display()
        );
        append(&data.join("postgresql.conf"), &conf);
        let hba = "\
host replication repl_trust 127.0.0.1/32 trust
host replication repl_scram 127.0.0.1/32 scram-sha-256
host replication repl_md5   127.0.0.1/32 md5
host replication repl_plain 127.0.0.1/32 password
host all         postgres   127.0.0.1/32 trust
local all        postgres                trust
";
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let log = server.dir.path().join("postgres.log");
        server.run(
            "pg_ctl",
            &[
                "-D",
                data_s,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        Some(server)
    }

    fn config(&self, user: &str, password: Option<&str>) -> ConnConfig {
        let mut s = format!(
            "host=127.0.0.1 port={} user={user} application_name={APP} connect_timeout=10",
            self.port
        );
        if let Some(p) = password {
            s.push_str(&format!(" password='{p}'"));
        }
        ConnConfig::parse(&s).unwrap()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.dir.path().join("postgres.log")) {
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- postgres.log (last lines) ---");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                self.datadir().to_str().unwrap(),
                "stop",
                "-m",
                "immediate",
                "-w",
            ])
            .output();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

async fn query_one(conn: &mut ReplicationConnection, sql: &str) -> Option<String> {
    let rows = conn
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone()
}

async fn query_lsn(conn: &mut ReplicationConnection, sql: &str) -> Option<Lsn> {
    query_one(conn, sql).await.map(|s| s.parse().unwrap())
}

/// Receives until the stream has WAL up to `target`, answering keepalives
/// that ask for a reply. Checks that XLogData start LSNs increase.
async fn receive_until(stream: &mut ReplicationStream, target: Lsn) -> (usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_start = None;
    let (mut messages, mut bytes) = (0usize, 0u64);
    while stream.received_up_to() < target {
        assert!(
            Instant::now() < deadline,
            "no WAL up to {target} within 10 s (have {})",
            stream.received_up_to()
        );
        match stream
            .next_message()
            .await
            .unwrap()
            .expect("stream ended early")
        {
            ReplicationMessage::XLogData {
                wal_start, data, ..
            } => {
                if let Some(prev) = last_start {
                    assert!(
                        wal_start > prev,
                        "wal_start went from {prev} to {wal_start}"
                    );
                }
                last_start = Some(wal_start);
                messages += 1;
                bytes += data.len() as u64;
            }
            ReplicationMessage::Keepalive {
                reply_requested, ..
            } => {
                if reply_requested {
                    let r = stream.received_up_to();
                    stream.send_standby_status(r, r, r, false).await.unwrap();
                }
            }
        }
    }
    (messages, bytes)
}

#[tokio::test]
async fn physical_replication_against_postgres_15() {
    let Some(pg) = PgServer::start() else { return };
    let cancel = CancellationToken::new();

    // Roles for each authentication method, made over our own plain connection.
    let mut admin = ReplicationConnection::connect_normal(&pg.config("postgres", None), &cancel)
        .await
        .expect("admin connection");
    for sql in [
        "CREATE ROLE repl_trust LOGIN REPLICATION".to_string(),
        "SET password_encryption = 'scram-sha-256'".to_string(),
        format!("CREATE ROLE repl_scram LOGIN REPLICATION PASSWORD '{SCRAM_PW}'"),
        "SET password_encryption = 'md5'".to_string(),
        format!("CREATE ROLE repl_md5 LOGIN REPLICATION PASSWORD '{MD5_PW}'"),
        format!("CREATE ROLE repl_plain LOGIN REPLICATION PASSWORD '{PLAIN_PW}'"),
    ] {
        admin
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // A server error leaves the connection usable.
    let e = admin.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(e.sqlstate(), Some("22012"), "{e}");
    assert_eq!(
        query_one(&mut admin, "SELECT 'x' || 1").await.as_deref(),
        Some("x1")
    );
    assert!(matches!(
        admin.identify_system().await,
        Err(ReplError::Config(_))
    ));

    // Every authentication method, and wrong or missing passwords.
    for (user, pw) in [
        ("repl_trust", None),
        ("repl_scram", Some(SCRAM_PW)),
        ("repl_md5", Some(MD5_PW)),
        ("repl_plain", Some(PLAIN_PW)),
    ] {
        let conn = ReplicationConnection::connect(&pg.config(user, pw), &cancel)
            .await
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
        let version = conn.server_version().expect("server_version reported");
        assert!(version.starts_with("15"), "{version}");
        conn.close().await.unwrap();
    }
    for user in ["repl_scram", "repl_md5", "repl_plain"] {
        let e = ReplicationConnection::connect(&pg.config(user, Some(WRONG_PW)), &cancel)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} with a wrong password connected"));
        let msg = e.to_string();
        assert!(matches!(e, ReplError::Auth(_)), "{user}: {e:?}");
        assert!(msg.contains("28P01"), "{user}: {msg}");
        for pw in [WRONG_PW, SCRAM_PW, MD5_PW, PLAIN_PW] {
            assert!(!msg.contains(pw) && !format!("{e:?}").contains(pw), "{msg}");
        }
        let e = ReplicationConnection::connect(&pg.config(user, None), &cancel)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(e, ReplError::Auth(ref m) if m.contains("has none")),
            "{user}: {e}"
        );
    }
    let e = ReplicationConnection::connect(&pg.config("nobody", Some(WRONG_PW)), &cancel)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, ReplError::Auth(ref m) if m.contains("28000")),
        "{e}"
    );

    // IDENTIFY_SYSTEM and slots.
    let mut repl =
        ReplicationConnection::connect(&pg.config("repl_scram", Some(SCRAM_PW)), &cancel)
            .await
            .unwrap();
    let sys = repl.identify_system().await.unwrap();
    assert_eq!(sys.timeline, 1);
    assert!(sys.xlogpos.is_valid());
    assert_eq!(sys.dbname, None);
    assert!(sys.systemid.parse::<u64>().is_ok(), "{sys:?}");
    assert!(repl
        .create_physical_slot_if_missing("ps_slot")
        .await
        .unwrap());
    assert!(!repl
        .create_physical_slot_if_missing("ps_slot")
        .await
        .unwrap());
    assert!(matches!(
        repl.create_physical_slot_if_missing("Bad-Name").await,
        Err(ReplError::Config(_))
    ));
    let restart = query_lsn(
        &mut admin,
        "SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ps_slot'",
    )
    .await;
    assert!(
        restart.is_some_and(|l| l.is_valid()),
        "RESERVE_WAL set no restart_lsn"
    );

    // A missing slot is refused before streaming starts.
    let missing = ReplicationConnection::connect(&pg.config("repl_trust", None), &cancel)
        .await
        .unwrap();
    let e = missing
        .start_physical(Some("no_such_slot"), sys.xlogpos, 1)
        .await
        .err()
        .unwrap();
    assert_eq!(e.sqlstate(), Some("42704"), "{e}");

    // Starting past the end of WAL is a server error. PostgreSQL checks this
    // after entering copy mode, so it arrives as the first stream message.
    let ahead = ReplicationConnection::connect(&pg.config("repl_trust", None), &cancel)
        .await
        .unwrap();
    let mut ahead = ahead
        .start_physical(None, sys.xlogpos + (1 << 30), 1)
        .await
        .unwrap();
    let e = ahead.next_message().await.unwrap_err();
    assert!(
        matches!(e, ReplError::Server { ref message, .. } if message.contains("ahead of the WAL flush")),
        "{e:?}"
    );
    assert!(matches!(
        ahead.next_message().await,
        Err(ReplError::Protocol(_))
    ));
    drop(ahead);

    // Stream the WAL of a real insert.
    let start = sys.xlogpos;
    let mut stream = repl
        .start_physical(Some("ps_slot"), start, sys.timeline)
        .await
        .unwrap();
    admin
        .simple_query("CREATE TABLE t(x int); INSERT INTO t SELECT generate_series(1, 10000)")
        .await
        .unwrap();
    let target = query_lsn(&mut admin, "SELECT pg_current_wal_lsn()")
        .await
        .unwrap();
    assert!(target > start);
    let (messages, bytes) = receive_until(&mut stream, target).await;
    assert!(messages > 0);
    let received = stream.received_up_to();
    assert_eq!(
        received.checked_sub(start),
        Some(bytes),
        "WAL is contiguous from the start LSN"
    );
    assert!(received >= target);

    // Standby status feedback shows up in pg_stat_replication and the slot.
    stream
        .send_standby_status(received, received, received, false)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rows = admin
            .simple_query(&format!(
                "SELECT flush_lsn, write_lsn FROM pg_stat_replication WHERE application_name = '{APP}'"
            ))
            .await
            .unwrap();
        let slot = query_lsn(
            &mut admin,
            "SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'ps_slot'",
        )
        .await;
        let lsns: Vec<Option<Lsn>> = rows
            .first()
            .map(|r| {
                r.iter()
                    .map(|c| c.as_ref().map(|s| s.parse().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        if lsns == [Some(received), Some(received)] && slot == Some(received) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "feedback not visible: {lsns:?}, slot {slot:?}, sent {received}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Idle: keepalives asking for a reply arrive (wal_sender_timeout = 2s);
    // answering them keeps the stream alive well past the timeout.
    let idle_until = Instant::now() + Duration::from_secs(5);
    let mut answered = 0;
    while Instant::now() < idle_until {
        let remaining = idle_until.saturating_duration_since(Instant::now());
        let msg = match tokio::time::timeout(remaining, stream.next_message()).await {
            Err(_) => break, // next_message is cancel-safe
            Ok(m) => m.unwrap().expect("stream ended while idle"),
        };
        if let ReplicationMessage::Keepalive {
            reply_requested: true,
            wal_end,
            ..
        } = msg
        {
            assert!(wal_end >= received);
            let r = stream.received_up_to();
            stream.send_standby_status(r, r, r, false).await.unwrap();
            answered += 1;
        }
    }
    assert!(
        answered >= 2,
        "only {answered} keepalives asked for a reply in 5 s"
    );
    let still = query_one(
        &mut admin,
        &format!("SELECT count(*) FROM pg_stat_replication WHERE application_name = '{APP}'"),
    )
    .await;
    assert_eq!(
        still.as_deref(),
        Some("1"),
        "walsender gone despite our replies"
    );

    // Leave streaming mode; the connection takes commands again.
    let (mut repl, next) = stream.finish().await.unwrap();
    assert_eq!(next, None);
    assert_eq!(repl.identify_system().await.unwrap().timeline, 1);
    assert!(repl.drop_slot_if_exists("ps_slot").await.unwrap());
    assert!(!repl.drop_slot_if_exists("ps_slot").await.unwrap());

    // Cancellation stops a waiting next_message promptly.
    let token = CancellationToken::new();
    let conn = ReplicationConnection::connect(&pg.config("repl_trust", None), &token)
        .await
        .unwrap();
    let now = query_lsn(&mut admin, "SELECT pg_current_wal_flush_lsn()")
        .await
        .unwrap();
    let mut stream = conn.start_physical(None, now, 1).await.unwrap();
    let canceller = token.clone();
    let cancelled_at = Instant::now() + Duration::from_millis(300);
    let task = tokio::spawn(async move {
        tokio::time::sleep_until(cancelled_at.into()).await;
        canceller.cancel();
    });
    let e = loop {
        match stream.next_message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended instead of being cancelled"),
            Err(e) => break e,
        }
    };
    assert!(matches!(e, ReplError::Cancelled), "{e:?}");
    assert!(Instant::now() < cancelled_at + Duration::from_secs(1));
    task.await.unwrap();
    assert!(matches!(
        stream.send_standby_status(now, now, now, false).await,
        Err(ReplError::Cancelled)
    ));
}
