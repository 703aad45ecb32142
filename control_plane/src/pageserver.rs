//! Starting, stopping and calling one local page server process.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::blocking::{Client, RequestBuilder};
use serde::de::DeserializeOwned;

use crate::local_env::{LocalEnv, PageServerSettings};

const PID_FILE: &str = "pageserver.pid";
const LOG_FILE: &str = "pageserver.log";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const STREAM_TIMEOUT: Duration = Duration::from_secs(3600);

/// One page server of a [`LocalEnv`].
pub struct PageServerNode<'a> {
    env: &'a LocalEnv,
    settings: &'a PageServerSettings,
    client: Client,
}

impl<'a> PageServerNode<'a> {
    /// The page server `settings` of `env`.
    pub fn new(env: &'a LocalEnv, settings: &'a PageServerSettings) -> Self {
        let client = Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("HTTP client builds");
        PageServerNode {
            env,
            settings,
            client,
        }
    }

    fn workdir(&self) -> PathBuf {
        self.env.pageserver_dir(self.settings.id)
    }

    fn binary(&self) -> PathBuf {
        self.env.bin_dir.join("pageserver")
    }

    fn config_args(&self) -> Vec<String> {
        let s = self.settings;
        let mut args = vec![
            format!("id={}", s.id),
            format!("listen_http_addr=\"{}\"", s.listen_http_addr),
            format!("listen_pg_addr=\"{}\"", s.listen_pg_addr),
        ];
        if self.env.auth {
            args.push("http_auth_type=\"JWT\"".into());
            args.push("pg_auth_type=\"JWT\"".into());
            args.push(format!(
                "auth_validation_public_key_path=\"{}\"",
                self.env.public_key_path().display()
            ));
        }
        args.into_iter()
            .flat_map(|a| ["-c".to_string(), a])
            .collect()
    }

    /// Writes the page server's `pageserver.toml` (`pageserver --init`).
    pub fn init(&self) -> anyhow::Result<()> {
        let out = Command::new(self.binary())
            .arg("--workdir")
            .arg(self.workdir())
            .arg("--init")
            .args(self.config_args())
            .output()
            .with_context(|| format!("cannot run {}", self.binary().display()))?;
        if !out.status.success() {
            bail!(
                "pageserver --init failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The pid of the running page server, if one holds the work
    /// directory's lock.
    pub fn running_pid(&self) -> Option<i32> {
        let path = self.workdir().join(PID_FILE);
        let file = File::options().read(true).write(true).open(&path).ok()?;
        match file.try_lock() {
            // We got the lock: nobody is running. Dropping the file releases it.
            Ok(()) => None,
            Err(_) => std::fs::read_to_string(&path).ok()?.trim().parse().ok(),
        }
    }

    /// Starts the page server in the background and waits until it is ready.
    pub fn start(&self) -> anyhow::Result<()> {
        if let Some(pid) = self.running_pid() {
            println!(
                "page server {} already running (pid {pid})",
                self.settings.id
            );
            return Ok(());
        }
        let log_path = self.workdir().join(LOG_FILE);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut child = Command::new(self.binary())
            .arg("--workdir")
            .arg(self.workdir())
            .args(self.config_args())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary().display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "page server {} exited with {status} while starting; see {}",
                    self.settings.id,
                    log_path.display()
                );
            }
            if matches!(self.get_status("/readiness"), Ok(200)) {
                println!(
                    "page server {} started (pid {}), HTTP on {}, log {}",
                    self.settings.id,
                    child.id(),
                    self.settings.listen_http_addr,
                    log_path.display()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "page server {} not ready after {START_TIMEOUT:?}; see {}",
                    self.settings.id,
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the page server: SIGTERM (or SIGKILL with `immediate`) and a
    /// wait for it to release its work directory.
    pub fn stop(&self, immediate: bool) -> anyhow::Result<()> {
        let Some(pid) = self.running_pid() else {
            println!("page server {} is not running", self.settings.id);
            return Ok(());
        };
        let signal = if immediate {
            nix::sys::signal::Signal::SIGKILL
        } else {
            nix::sys::signal::Signal::SIGTERM
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .with_context(|| format!("cannot signal page server pid {pid}"))?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.running_pid().is_some() {
            if Instant::now() > deadline {
                bail!(
                    "page server {} (pid {pid}) did not stop within {STOP_TIMEOUT:?}",
                    self.settings.id
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("page server {} stopped", self.settings.id);
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.settings.listen_http_addr)
    }

    fn authorized(&self, req: RequestBuilder) -> anyhow::Result<RequestBuilder> {
        Ok(match self.env.admin_token()? {
            Some(token) => req.bearer_auth(token),
            None => req,
        })
    }

    /// Status code of a GET on `path`.
    pub fn get_status(&self, path: &str) -> anyhow::Result<u16> {
        Ok(self.client.get(self.url(path)).send()?.status().as_u16())
    }

    /// Sends `req`; a non-2xx answer becomes an error carrying the server's `msg`.
    fn send_raw(&self, req: RequestBuilder) -> anyhow::Result<reqwest::blocking::Response> {
        let resp = self.authorized(req)?.send().with_context(|| {
            format!(
                "page server {} at {} does not answer; is it started?",
                self.settings.id, self.settings.listen_http_addr
            )
        })?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text()?;
            let msg = serde_json::from_str::<pageserver_api::models::HttpErrorBody>(&text)
                .map(|b| b.msg)
                .unwrap_or(text);
            bail!("page server answered {status}: {msg}");
        }
        Ok(resp)
    }

    /// Sends `req` and parses the JSON answer.
    fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> anyhow::Result<T> {
        let text = self.send_raw(req)?.text()?;
        serde_json::from_str(&text).with_context(|| format!("unexpected answer: {text}"))
    }

    /// GET `path`, parsed.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.client.get(self.url(path)))
    }

    /// This page server's node id.
    pub fn id(&self) -> u64 {
        self.settings.id
    }

    /// PUT `body` to `path`, parsed.
    pub fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        self.send(self.client.put(self.url(path)).json(body))
    }

    /// GET `path` as a byte stream (a base backup), with a timeout long
    /// enough for a large database. A non-2xx answer is an error.
    pub fn get_stream(&self, path: &str) -> anyhow::Result<reqwest::blocking::Response> {
        let client = Client::builder().timeout(STREAM_TIMEOUT).build()?;
        self.send_raw(client.get(self.url(path)))
    }

    /// POST `body` to `path`, parsed.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        self.send(self.client.post(self.url(path)).json(body))
    }
}
