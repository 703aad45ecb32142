//! `cplane`: runs a local cluster (page servers with embedded defaults) and
//! drives it: tenants, timelines and tokens. See DESIGN.md section 5.

mod endpoint;
mod local_env;
mod pageserver;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pageserver_api::models::{TenantInfo, TimelineInfo};
use serde_json::{json, Map, Value};
use utils::auth::Scope;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use endpoint::Endpoint;
use local_env::LocalEnv;
use pageserver::PageServerNode;

#[derive(Parser)]
#[command(name = "cplane", about = "Local page server cluster control")]
struct Cli {
    /// Directory of the local environment.
    #[arg(long, env = "CPLANE_WORKDIR", default_value = ".cplane", global = true)]
    workdir: PathBuf,
    /// Page server to talk to (node id).
    #[arg(long, default_value_t = 1, global = true)]
    pageserver_id: u64,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the environment: key pair, settings, page server work directories.
    Init {
        /// Number of page servers (HTTP ports from 9898, page service from 64000).
        #[arg(long, default_value_t = 1)]
        pageservers: u64,
        /// Require JWTs on the page servers' HTTP API and page service.
        #[arg(long)]
        auth: bool,
        /// Directory holding the `pageserver` binary (default: beside `cplane`).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// HTTP port of the first page server; the others follow.
        #[arg(long, default_value_t = 9898)]
        http_port: u16,
        /// Page service port of the first page server; the others follow.
        #[arg(long, default_value_t = 64000)]
        pg_port: u16,
    },
    /// Start every page server of the environment.
    Start,
    /// Stop every page server of the environment.
    Stop {
        /// SIGKILL instead of a graceful shutdown.
        #[arg(long)]
        immediate: bool,
    },
    /// Show each page server's process, readiness and tenants.
    Status,
    /// Tenant operations.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Timeline operations.
    #[command(subcommand)]
    Timeline(TimelineCmd),
    /// Compute endpoints: stock PostgreSQL on a base backup of a timeline.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Print a JWT signed with the environment's key.
    Token {
        /// `pageserverapi`, `tenant` or `generations_api`.
        #[arg(long)]
        scope: String,
        /// Tenant of a `tenant` token.
        #[arg(long)]
        tenant_id: Option<TenantId>,
    },
}

#[derive(Subcommand)]
enum TenantCmd {
    /// Create a tenant.
    Create {
        /// Id to create (generated when absent).
        #[arg(long)]
        tenant_id: Option<TenantId>,
        /// Tenant config override, `key=value` (e.g. `-c gc_horizon=1024`).
        #[arg(short = 'c', long = "config")]
        config: Vec<String>,
    },
    /// List tenants.
    List,
}

#[derive(Subcommand)]
enum EndpointCmd {
    /// Register an endpoint (read-write at the timeline's head, or
    /// read-only at `--lsn`).
    Create {
        /// Endpoint name.
        name: String,
        #[arg(long = "tenant", alias = "tenant-id")]
        tenant_id: TenantId,
        #[arg(long = "timeline", alias = "timeline-id")]
        timeline_id: TimelineId,
        /// A past LSN: the endpoint is a read-only hot standby there.
        #[arg(long)]
        lsn: Option<Lsn>,
        /// Port on 127.0.0.1 (default: a free one).
        #[arg(long)]
        port: Option<u16>,
        /// Database user to connect as.
        #[arg(long, default_value = "postgres")]
        pg_user: String,
    },
    /// Start an endpoint from a fresh base backup.
    Start { name: String },
    /// Stop an endpoint; a read-write one first hands all its WAL over.
    Stop {
        name: String,
        /// Immediate shutdown (writes not yet streamed may be lost).
        #[arg(long)]
        immediate: bool,
    },
    /// Stop and remove an endpoint.
    Remove { name: String },
    /// List endpoints.
    List,
}

#[derive(Subcommand)]
enum TimelineCmd {
    /// Create a root timeline.
    Create {
        #[arg(long)]
        tenant_id: TenantId,
        /// Id to create (generated when absent).
        #[arg(long)]
        timeline_id: Option<TimelineId>,
    },
    /// Create a branch of a timeline.
    Branch {
        #[arg(long)]
        tenant_id: TenantId,
        /// Parent timeline.
        #[arg(long)]
        ancestor_timeline_id: TimelineId,
        /// Branch point (default: the parent's last record LSN).
        #[arg(long)]
        ancestor_start_lsn: Option<Lsn>,
        /// Id to create (generated when absent).
        #[arg(long)]
        timeline_id: Option<TimelineId>,
    },
    /// List a tenant's timelines.
    List {
        #[arg(long)]
        tenant_id: TenantId,
    },
}

/// `key=value` pairs as a JSON object; values that parse as JSON (numbers,
/// booleans) keep their type, the rest are strings (`10m`, `7days`).
fn config_object(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("config override {pair:?} is not key=value"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        map.insert(key.trim().to_string(), value);
    }
    Ok(map)
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn parse_scope(s: &str) -> anyhow::Result<Scope> {
    serde_json::from_value(Value::String(s.into())).map_err(|_| {
        anyhow::anyhow!("unknown scope {s:?}: use pageserverapi, tenant or generations_api")
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::Init {
        pageservers,
        auth,
        bin_dir,
        http_port,
        pg_port,
    } = &cli.command
    {
        let bin_dir = match bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("cplane has no parent directory")?
                .to_path_buf(),
        };
        let env = LocalEnv::new(
            cli.workdir.clone(),
            bin_dir,
            *pageservers,
            (*http_port, *pg_port),
            *auth,
        );
        env.create()?;
        for settings in &env.pageservers {
            PageServerNode::new(&env, settings).init()?;
        }
        println!("initialized {}", cli.workdir.display());
        return Ok(());
    }

    let env = LocalEnv::load(&cli.workdir)?;
    let node = PageServerNode::new(&env, env.pageserver(cli.pageserver_id)?);
    match cli.command {
        Cmd::Init { .. } => unreachable!("handled above"),
        Cmd::Start => {
            for s in &env.pageservers {
                PageServerNode::new(&env, s).start()?;
            }
        }
        Cmd::Stop { immediate } => {
            for s in &env.pageservers {
                PageServerNode::new(&env, s).stop(immediate)?;
            }
        }
        Cmd::Status => {
            for s in &env.pageservers {
                let ps = PageServerNode::new(&env, s);
                match ps.running_pid() {
                    None => println!("page server {}: stopped", s.id),
                    Some(pid) => {
                        let ready = ps.get_status("/readiness").map_or_else(
                            |e| format!("not answering ({e})"),
                            |c| {
                                if c == 200 {
                                    "ready".into()
                                } else {
                                    format!("not ready ({c})")
                                }
                            },
                        );
                        let tenants = ps
                            .get::<Vec<TenantInfo>>("/v1/tenant/")
                            .map_or_else(|e| format!("? ({e})"), |t| t.len().to_string());
                        println!(
                            "page server {}: running (pid {pid}), {ready}, http {}, tenants {tenants}",
                            s.id, s.listen_http_addr
                        );
                    }
                }
            }
        }
        Cmd::Tenant(TenantCmd::Create { tenant_id, config }) => {
            let mut body = config_object(&config)?;
            if let Some(id) = tenant_id {
                body.insert("new_tenant_id".into(), json!(id));
            }
            let id: TenantId = node.post("/v1/tenant/", &Value::Object(body))?;
            println!("{id}");
        }
        Cmd::Tenant(TenantCmd::List) => {
            let tenants: Vec<TenantInfo> = node.get("/v1/tenant/")?;
            for t in tenants {
                println!("{} {}", t.id, t.state.name());
            }
        }
        Cmd::Timeline(TimelineCmd::Create {
            tenant_id,
            timeline_id,
        }) => {
            let info: TimelineInfo = node.post(
                &format!("/v1/tenant/{tenant_id}/timeline/"),
                &json!({ "new_timeline_id": timeline_id }),
            )?;
            print_json(&info)?;
        }
        Cmd::Timeline(TimelineCmd::Branch {
            tenant_id,
            ancestor_timeline_id,
            ancestor_start_lsn,
            timeline_id,
        }) => {
            let info: TimelineInfo = node.post(
                &format!("/v1/tenant/{tenant_id}/timeline/"),
                &json!({
                    "new_timeline_id": timeline_id,
                    "ancestor_timeline_id": ancestor_timeline_id,
                    "ancestor_start_lsn": ancestor_start_lsn,
                }),
            )?;
            print_json(&info)?;
        }
        Cmd::Timeline(TimelineCmd::List { tenant_id }) => {
            let timelines: Vec<TimelineInfo> =
                node.get(&format!("/v1/tenant/{tenant_id}/timeline"))?;
            for t in timelines {
                let ancestor = t
                    .ancestor_timeline_id
                    .map(|a| format!(" (branch of {a} at {})", t.ancestor_lsn.unwrap_or_default()))
                    .unwrap_or_default();
                println!(
                    "{} {} last_record_lsn {}{ancestor}",
                    t.timeline_id, t.state, t.last_record_lsn
                );
            }
        }
        Cmd::Endpoint(cmd) => endpoint_command(&env, &node, cmd)?,
        Cmd::Token { scope, tenant_id } => {
            let scope = parse_scope(&scope)?;
            if (scope == Scope::Tenant) != tenant_id.is_some() {
                anyhow::bail!("--tenant-id is required with --scope tenant and only with it");
            }
            println!("{}", env.token(scope, tenant_id)?);
        }
    }
    Ok(())
}

fn endpoint_command(
    env: &LocalEnv,
    node: &PageServerNode<'_>,
    cmd: EndpointCmd,
) -> anyhow::Result<()> {
    let node_of = |ep: &Endpoint| -> anyhow::Result<PageServerNode<'_>> {
        Ok(PageServerNode::new(env, env.pageserver(ep.pageserver_id)?))
    };
    match cmd {
        EndpointCmd::Create {
            name,
            tenant_id,
            timeline_id,
            lsn,
            port,
            pg_user,
        } => {
            let ep = Endpoint::create(
                env,
                node,
                &name,
                (tenant_id, timeline_id),
                lsn,
                port,
                &pg_user,
            )?;
            println!("created endpoint {} on port {}", ep.name, ep.port);
        }
        EndpointCmd::Start { name } => {
            let ep = Endpoint::load(env, &name)?;
            ep.start(env, &node_of(&ep)?)?;
        }
        EndpointCmd::Stop { name, immediate } => {
            let ep = Endpoint::load(env, &name)?;
            ep.stop(env, &node_of(&ep)?, immediate)?;
        }
        EndpointCmd::Remove { name } => {
            let ep = Endpoint::load(env, &name)?;
            ep.remove(env, &node_of(&ep)?)?;
            println!("removed endpoint {name}");
        }
        EndpointCmd::List => {
            for ep in Endpoint::list(env)? {
                let mode = match ep.lsn {
                    Some(lsn) => format!("read-only at {lsn}"),
                    None => "read-write".to_string(),
                };
                let state = if ep.is_running(env) {
                    "running"
                } else {
                    "stopped"
                };
                println!(
                    "{} {} tenant {} timeline {} {mode} port {}",
                    ep.name, state, ep.tenant_id, ep.timeline_id, ep.port
                );
            }
        }
    }
    Ok(())
}
