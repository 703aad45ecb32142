//! A real S3-compatible server for the tests: `moto_server` from the repo's
//! Python virtualenv, on a free loopback port, killed when the guard drops.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long moto may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server`; killed on drop.
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    port: u16,
}

/// The `moto_server` executable: `$MOTO_SERVER`, else the repo's `.venv`.
/// Fails (never skips) with instructions when it is missing.
fn moto_executable() -> anyhow::Result<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    let candidate = match std::env::var_os("MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => venv.clone(),
    };
    if !candidate.is_file() {
        bail!(
            "the S3 conformance tests need moto_server, an S3-compatible test server, and it \
             was not found at {} (from $MOTO_SERVER, or the default {}). Install it with \
             `. scripts/common.sh && ensure_python` from the repository root (creates .venv \
             from test_runner/requirements.txt, which lists moto[server]), or \
             `pip install 'moto[server]'` and set MOTO_SERVER to the moto_server path.",
            candidate.display(),
            venv.display()
        );
    }
    Ok(candidate)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(listener.local_addr()?.port())
}

impl MotoServer {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> anyhow::Result<Self> {
        let exe = moto_executable()?;
        let mut last_error = None;
        // Another process may take the port between our probe and moto's bind.
        for _ in 0..5 {
            let port = free_port()?;
            let child = Command::new(&exe)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", exe.display()))?;
            let mut server = MotoServer {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
                port,
            };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server on port {} exited early: {status}", self.port);
            }
            if self.request("GET", "/").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "moto_server did not answer on port {} within {START_TIMEOUT:?}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One HTTP/1.1 request with an empty body; returns the status code.
    fn request(&self, method: &str, path: &str) -> anyhow::Result<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let response = String::from_utf8_lossy(&response);
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no HTTP status in {response:?}"))?;
        Ok(status)
    }

    /// Creates `bucket` (object_store cannot create buckets).
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let status = self.request("PUT", &format!("/{bucket}"))?;
        if status != 200 {
            bail!("creating bucket {bucket} on moto answered {status}");
        }
        Ok(())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
