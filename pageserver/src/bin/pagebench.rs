//! `pagebench`: a load generator for the page service's `pagestream_v2`.
//!
//! N connections each keep D GetPage requests of random blocks in flight
//! (at the latest LSN) for a duration or a request count; the relations are
//! given as `--rel spc/db/rel[:nblocks]` or discovered from the primary
//! (`--connstr`, `--table`). It prints requests/s and p50/p99/p99.9 latency,
//! and runs the same client loop against a trivial loopback server that
//! answers every request with 8 KiB at once (the floor; a child process
//! running this binary's own server loop), and prints the ratios. The two
//! alternate for `--rounds` rounds (page server, then floor, in each) and
//! each figure is the median over the rounds, so that a passing disturbance
//! of the machine moves one round of one side, not the comparison.
//! `--json` prints one JSON object instead, for scripts.
//!
//! ```text
//! pagebench --page-service 127.0.0.1:64000 --tenant T --timeline TL \
//!     --connstr postgresql://postgres@127.0.0.1:5432/postgres \
//!     --connections 4 --depth 32 --duration 10s
//! ```

#[path = "pagebench/client.rs"]
mod client;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use pageserver_api::key::RelTag;
use pageserver_api::pagestream::DEFAULT_TABLESPACE;
use pq_proto::{ConnConfig, ReplicationConnection};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use client::{Client, ConnStats, Load};

/// Benchmark the page service's pagestream_v2 against a loopback floor.
#[derive(Parser, Debug)]
#[command(name = "pagebench", version)]
struct Args {
    /// Page service address (host:port).
    #[arg(long, default_value = "127.0.0.1:64000")]
    page_service: String,
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Timeline id.
    #[arg(long)]
    timeline: String,
    /// JWT sent as the password when the page service asks for one.
    #[arg(long, env = "PAGEBENCH_TOKEN")]
    token: Option<String>,
    /// Relation to read, `spcnode/dbnode/relnode[:nblocks]` (main fork);
    /// without `:nblocks` its size is asked of the page service. Repeatable.
    #[arg(long = "rel")]
    rels: Vec<String>,
    /// Primary to discover relations from (with --table).
    #[arg(long)]
    connstr: Option<String>,
    /// Table (or index) whose main fork to read, looked up on --connstr.
    /// Repeatable; default pgbench_accounts.
    #[arg(long = "table")]
    tables: Vec<String>,
    /// Connections.
    #[arg(short = 'n', long, default_value_t = 1)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(short = 'd', long, default_value_t = 1)]
    depth: usize,
    /// How long each run lasts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Rounds of (page server run, floor run); figures are medians.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Stop each connection after this many requests (before --duration).
    #[arg(long)]
    requests: Option<u64>,
    /// Skip the loopback floor run.
    #[arg(long)]
    no_floor: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// A relation to read and its size in blocks.
#[derive(Debug, Clone)]
pub struct Rel {
    tag: RelTag,
    nblocks: u32,
}

fn parse_rel(s: &str) -> anyhow::Result<(RelTag, Option<u32>)> {
    let (path, n) = match s.split_once(':') {
        Some((p, n)) => (
            p,
            Some(n.parse().with_context(|| format!("bad nblocks in {s:?}"))?),
        ),
        None => (s, None),
    };
    let parts: Vec<u32> = path
        .split('/')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("--rel {s:?} is not spcnode/dbnode/relnode[:nblocks]"))?;
    let [spcnode, dbnode, relnode] = parts[..] else {
        bail!("--rel {s:?} is not spcnode/dbnode/relnode[:nblocks]");
    };
    Ok((
        RelTag {
            spcnode,
            dbnode,
            relnode,
            forknum: 0,
        },
        n,
    ))
}

async fn discover(connstr: &str, tables: &[String]) -> anyhow::Result<Vec<RelTag>> {
    let cfg = ConnConfig::parse(connstr)?;
    let cancel = CancellationToken::new();
    let mut conn = ReplicationConnection::connect_normal(&cfg, &cancel).await?;
    let mut out = Vec::new();
    for table in tables {
        if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("table name {table:?} must be a plain identifier");
        }
        let rows = conn
            .simple_query(&format!(
                "SELECT reltablespace, (SELECT oid FROM pg_database WHERE datname = current_database()), \
                 pg_relation_filenode(oid) FROM pg_class WHERE relname = '{table}'"
            ))
            .await?;
        let [row] = rows.as_slice() else {
            bail!("table {table} not found on the primary");
        };
        let num = |i: usize| -> anyhow::Result<u32> {
            Ok(row[i].as_deref().context("NULL in pg_class")?.parse()?)
        };
        let spcnode = match num(0)? {
            0 => DEFAULT_TABLESPACE,
            s => s,
        };
        out.push(RelTag {
            spcnode,
            dbnode: num(1)?,
            relnode: num(2)?,
            forknum: 0,
        });
    }
    conn.close().await?;
    Ok(out)
}

/// Aggregated results of one run.
struct Summary {
    requests: usize,
    /// Requests per second (of one run, or the median of the rounds).
    rps: f64,
    errors: u64,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    first_error: Option<String>,
}

impl Summary {
    /// Field by field median of `runs` (not empty).
    fn median(mut runs: Vec<Summary>) -> Summary {
        fn mid(mut v: Vec<f64>) -> f64 {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        }
        let pick = |f: fn(&Summary) -> f64, runs: &[Summary]| mid(runs.iter().map(f).collect());
        let rps = pick(|s| s.rps, &runs);
        let p50_us = pick(|s| s.p50_us, &runs);
        let p99_us = pick(|s| s.p99_us, &runs);
        let p999_us = pick(|s| s.p999_us, &runs);
        let secs: f64 = runs.iter().map(|s| s.secs).sum();
        let errors = runs.iter().map(|s| s.errors).sum();
        let first_error = runs.iter_mut().find_map(|s| s.first_error.take());
        Summary {
            requests: runs.iter().map(|s| s.requests).sum(),
            rps,
            errors,
            secs,
            p50_us,
            p99_us,
            p999_us,
            first_error,
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.secs,
            "rps": self.rps,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
        })
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<12} {:>10.0} req/s  p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  ({} requests, {} errors in {:.1} s)",
            self.rps,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.requests,
            self.errors,
            self.secs
        )
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i])
}

async fn run_load(
    addr: &str,
    args: &Args,
    token: Option<&str>,
    rels: &[Rel],
    load: Load,
) -> anyhow::Result<Summary> {
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        clients.push(Client::connect(addr, token, &args.tenant, &args.timeline).await?);
    }
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in clients {
        set.spawn(client::drive(c, rels.to_vec(), load));
    }
    let mut all: Vec<ConnStats> = Vec::new();
    while let Some(r) = set.join_next().await {
        all.push(r??);
    }
    let secs = start.elapsed().as_secs_f64();
    let mut lat: Vec<u32> = all
        .iter()
        .flat_map(|s| s.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    Ok(Summary {
        requests: lat.len(),
        rps: lat.len() as f64 / secs,
        errors: all.iter().map(|s| s.errors).sum(),
        secs,
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        p999_us: percentile(&lat, 0.999),
        first_error: all.into_iter().find_map(|s| s.first_error),
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.connections == 0 || args.depth == 0 || args.rounds == 0 {
        bail!("--connections, --depth and --rounds must be at least 1");
    }
    let mut wanted: Vec<(RelTag, Option<u32>)> = args
        .rels
        .iter()
        .map(|s| parse_rel(s))
        .collect::<Result<_, _>>()?;
    if let Some(connstr) = &args.connstr {
        let tables = if args.tables.is_empty() {
            vec!["pgbench_accounts".to_string()]
        } else {
            args.tables.clone()
        };
        wanted.extend(
            discover(connstr, &tables)
                .await?
                .into_iter()
                .map(|r| (r, None)),
        );
    }
    if wanted.is_empty() {
        bail!("no relations: pass --rel or --connstr");
    }
    let token = args.token.as_deref();
    let mut probe =
        Client::connect(&args.page_service, token, &args.tenant, &args.timeline).await?;
    let mut rels = Vec::new();
    for (tag, n) in wanted {
        let nblocks = match n {
            Some(n) => n,
            None => client::nblocks(&mut probe, tag).await?,
        };
        if nblocks == 0 {
            bail!("relation {tag} is empty");
        }
        rels.push(Rel { tag, nblocks });
    }
    drop(probe);
    let load = Load {
        depth: args.depth,
        duration: args.duration,
        requests: args.requests,
    };
    let mut floor_server = if args.no_floor {
        None
    } else {
        Some(FloorProcess::start().await?)
    };
    let (mut ours, mut floors) = (Vec::new(), Vec::new());
    let mut failure = None;
    for _ in 0..args.rounds {
        match run_load(&args.page_service, &args, token, &rels, load).await {
            Ok(s) => ours.push(s),
            Err(e) => failure = Some(e),
        }
        if let (Some(server), None) = (&floor_server, &failure) {
            match run_load(&server.addr, &args, None, &rels, load).await {
                Ok(s) => floors.push(s),
                Err(e) => failure = Some(e),
            }
        }
        if failure.is_some() {
            break;
        }
    }
    if let Some(server) = &mut floor_server {
        server.stop().await;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let ours = Summary::median(ours);
    let floor = (!floors.is_empty()).then(|| Summary::median(floors));
    if args.json {
        let mut out = serde_json::json!({
            "connections": args.connections,
            "depth": args.depth,
            "rounds": args.rounds,
            "relations": rels.iter().map(|r| format!("{}:{}", r.tag, r.nblocks)).collect::<Vec<_>>(),
            "pageserver": ours.json(),
        });
        if let Some(f) = &floor {
            out["floor"] = f.json();
            out["p50_ratio"] = (ours.p50_us / f.p50_us.max(1.0)).into();
            out["throughput_ratio"] = (ours.rps / f.rps).into();
        }
        println!("{out}");
    } else {
        println!(
            "pagestream_v2 GetPage, {} connections x depth {}, {} relations, median of {} rounds",
            args.connections,
            args.depth,
            rels.len(),
            args.rounds
        );
        println!("{}", ours.line("pageserver"));
        if let Some(f) = &floor {
            println!("{}", f.line("floor"));
            println!(
                "ratios       p50 {:.2}x the floor, throughput {:.0}% of the floor",
                ours.p50_us / f.p50_us.max(1.0),
                100.0 * ours.rps / f.rps
            );
        }
    }
    if let Some(e) = ours.first_error {
        eprintln!("pagebench: {} error responses, the first: {e}", ours.errors);
    }
    Ok(())
}

/// The floor server in a child process (this binary with [`FLOOR_MODE`]):
/// a separate process, like the page service, so that every response
/// crosses the same process boundary and wakes a thread in another process.
/// Run in the client's own process, the floor would skip those wake-ups and
/// measure less than any real server can do.
struct FloorProcess {
    child: tokio::process::Child,
    addr: String,
}

/// First argument that makes this binary serve the floor: it prints the
/// floor server's address on a line, then serves until its stdin closes.
const FLOOR_MODE: &str = "__serve-floor";

impl FloorProcess {
    async fn start() -> anyhow::Result<FloorProcess> {
        use tokio::io::AsyncBufReadExt;
        let exe = std::env::current_exe().context("cannot find the pagebench binary")?;
        let mut child = tokio::process::Command::new(exe)
            .arg(FLOOR_MODE)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the floor server process")?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .context("cannot read the floor server's address")?;
        let addr = line.trim().to_string();
        if addr.is_empty() {
            bail!("the floor server process exited before listening");
        }
        Ok(FloorProcess { child, addr })
    }

    async fn stop(&mut self) {
        // Closing stdin tells it to stop; kill it if it does not.
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// [`FLOOR_MODE`]: serves the floor until stdin closes.
async fn serve_floor() -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let addr = client::start_floor_server(cancel.clone(), &tasks).await?;
    println!("{addr}");
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    cancel.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if std::env::args().nth(1).as_deref() == Some(FLOOR_MODE) {
        if let Err(e) = runtime.block_on(serve_floor()) {
            eprintln!("pagebench floor server: error: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let args = Args::parse();
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("pagebench: error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_args() {
        let (r, n) = parse_rel("1663/5/16384:100").unwrap();
        assert_eq!(
            (r.spcnode, r.dbnode, r.relnode, n),
            (1663, 5, 16384, Some(100))
        );
        assert_eq!(parse_rel("1663/5/16384").unwrap().1, None);
        for bad in ["1663/5", "a/b/c", "1/2/3:x", "1/2/3/4"] {
            assert!(parse_rel(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rounds_report_medians() {
        let run = |rps: f64, p50_us: f64, requests: usize| Summary {
            requests,
            rps,
            errors: 1,
            secs: 5.0,
            p50_us,
            p99_us: p50_us * 2.0,
            p999_us: p50_us * 3.0,
            first_error: None,
        };
        let m = Summary::median(vec![
            run(100.0, 50.0, 500),
            run(300.0, 10.0, 1500),
            run(200.0, 90.0, 1000),
        ]);
        assert_eq!(
            (m.rps, m.p50_us, m.p99_us, m.p999_us),
            (200.0, 50.0, 100.0, 150.0)
        );
        assert_eq!((m.requests, m.errors, m.secs), (3000, 3, 15.0));
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), 500.0);
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&v, 0.999), 999.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
