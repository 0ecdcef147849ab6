//! usher-load: measures a running usher node from the outside.
//!
//!   usher-load register --count 2000 --concurrency 50
//!   usher-load login --count 5000 --concurrency 50 --mech scram-sha-256
//!   usher-load idle --connections 10000 --server-pid $(pidof usher)
//!
//! Every run is bounded by its count and a deadline, and talks only to the
//! address it is given (loopback by default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

mod ledger_scenario;

use usher_load::client::{Auth, Mech};
use usher_load::{Client, Trust};

#[derive(Parser)]
#[command(name = "usher-load", about = "Load harness for usher")]
struct Cli {
    /// The node's client address.
    #[arg(long, default_value = "127.0.0.1:5222")]
    addr: SocketAddr,
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// PEM certificate to trust (usher's generated one is DATA_DIR/tls/DOMAIN.crt);
    /// without it any certificate is accepted.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    deadline: u64,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Clone, Copy, ValueEnum)]
enum MechArg {
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-1")]
    ScramSha1,
    #[value(name = "plain")]
    Plain,
}

impl From<MechArg> for Mech {
    fn from(m: MechArg) -> Mech {
        match m {
            MechArg::ScramSha256 => Mech::ScramSha256,
            MechArg::ScramSha1 => Mech::ScramSha1,
            MechArg::Plain => Mech::Plain,
        }
    }
}

#[derive(Subcommand)]
enum Scenario {
    /// Registrations per second: each worker connects, registers a fresh account
    /// (open registration must be on) and disconnects.
    Register {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Username prefix; a run id and a sequence number follow it.
        #[arg(long, default_value = "load")]
        prefix: String,
        /// Prove this invite (XEP-0445) before each registration; use an
        /// unlimited group invite for an invite-only node.
        #[arg(long)]
        invite: Option<String>,
    },
    /// usher's CQL account store alone, in this process: account inserts
    /// (INSERT ... IF NOT EXISTS, a lightweight transaction) against a CQL
    /// database, in a fresh keyspace.
    CqlInsert {
        #[arg(long, default_value = "127.0.0.1:9042")]
        node: String,
        #[arg(long, default_value_t = 2000)]
        count: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
    },
    /// The ledger alone, in this process: reserve+commit pairs through a
    /// single-node Raft group on disk (a temporary directory).
    Ledger {
        #[arg(long, default_value_t = 5000)]
        count: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// In-process: send every command as its own Raft entry.
        #[arg(long)]
        no_batching: bool,
        /// In-process: shards of the ledger.
        #[arg(long, default_value_t = 8)]
        shards: u32,
        /// In-process: where the ledger lives [default: a temporary directory]
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Load a running cluster through this node's peer API (host:port)
        /// instead of an in-process ledger.
        #[arg(long)]
        peer: Option<String>,
        /// File holding the cluster secret, with --peer.
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// Logins per second: connect, STARTTLS, SASL, bind, close.
    Login {
        #[arg(long, default_value_t = 2000)]
        count: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        #[arg(long, value_enum, default_value = "scram-sha-256")]
        mech: MechArg,
        /// Account to log in as; registered first if it does not exist.
        #[arg(long, default_value = "loaduser")]
        user: String,
        #[arg(long, default_value = "load-password-1")]
        password: String,
    },
    /// Opens authenticated, bound connections and holds them idle, reporting
    /// the server's resident memory before and after.
    Idle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        #[arg(long, default_value = "loaduser")]
        user: String,
        #[arg(long, default_value = "load-password-1")]
        password: String,
        /// The server's process id, to read its memory from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Seconds to hold the connections after the last one is up.
        #[arg(long, default_value_t = 5)]
        hold: u64,
    },
}

struct Target {
    addr: SocketAddr,
    domain: String,
    trust: Trust,
}

impl Target {
    async fn connect_tls(&self) -> anyhow::Result<Client> {
        Ok(Client::connect_tls(self.addr, &self.domain, &self.trust).await?)
    }

    async fn login(&self, mech: Mech, user: &str, password: &str) -> anyhow::Result<Client> {
        let (c, _) =
            Client::login(self.addr, &self.domain, &self.trust, mech, user, password).await?;
        Ok(c)
    }

    /// Registers `user` unless it exists already.
    async fn ensure_account(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let mut c = self.connect_tls().await?;
        if c.authenticate(Mech::ScramSha256, user, password).await? == Auth::Success {
            return Ok(());
        }
        let mut c = self.connect_tls().await?;
        let reply = c.register(user, password).await?;
        if reply.attr("type") != Some("result") {
            bail!("could not register {user}: {reply:?}");
        }
        Ok(())
    }
}

/// Runs `op(i)` for i in 0..count with `concurrency` workers; reports rate and latency.
pub(crate) async fn run_closed_loop<F, Fut>(
    label: impl std::fmt::Display,
    count: usize,
    concurrency: usize,
    deadline: Instant,
    op: F,
) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let label: Arc<str> = label.to_string().into();
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (op, next, failures, hist, label) = (
            op.clone(),
            next.clone(),
            failures.clone(),
            hist.clone(),
            label.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count || Instant::now() > deadline {
                    return;
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(()) => {
                        let us = t.elapsed().as_micros() as u64;
                        let _ = hist.lock().await.record(us.max(1));
                    }
                    Err(e) => {
                        if failures.fetch_add(1, Ordering::SeqCst) < 5 {
                            eprintln!("{label} #{i} failed: {e:#}");
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let hist = hist.lock().await;
    let ok = hist.len();
    println!(
        "{label}: {ok} ok, {} failed in {elapsed:.2}s = {:.1}/s at concurrency {concurrency}; \
         latency ms p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        failures.load(Ordering::SeqCst),
        ok as f64 / elapsed,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.9) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
    );
    if failures.load(Ordering::SeqCst) > 0 {
        bail!("{label}: some operations failed");
    }
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Scenario::Ledger {
        count,
        concurrency,
        no_batching,
        shards,
        dir,
        peer,
        secret_file,
    } = cli.scenario
    {
        let options = ledger_scenario::Options {
            count,
            concurrency,
            batching: !no_batching,
            shards,
            dir,
            peer,
            secret_file,
            deadline: Instant::now() + Duration::from_secs(cli.deadline),
        };
        // The ledger's shard is an actix actor: it needs an actix System.
        return actix_rt::System::new().block_on(ledger_scenario::run(options));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Scenario::CqlInsert {
        node,
        count,
        concurrency,
    } = cli.scenario
    {
        return runtime.block_on(cql_insert_scenario(node, count, concurrency));
    }
    runtime.block_on(remote(cli))
}

async fn cql_insert_scenario(node: String, count: usize, concurrency: usize) -> anyhow::Result<()> {
    use usher::accounts::scylla::ScyllaStore;
    use usher::accounts::{Account, AccountStore, CreateOutcome, Credentials};
    let keyspace = format!(
        "usher_load_{}",
        usher::secrets::random_id(6)
            .to_lowercase()
            .replace('-', "_")
    );
    let config = usher::config::ScyllaConfig {
        nodes: vec![node],
        keyspace,
        ..Default::default()
    };
    let store = Arc::new(ScyllaStore::connect(&config).await?);
    // Derived once: this measures the database round trip, not PBKDF2.
    let credentials =
        Credentials::derive("load-password-1", 4096, &usher::xmpp::sasl::HashAlg::ALL);
    let deadline = Instant::now() + Duration::from_secs(600);
    run_closed_loop("cql insert (LWT)", count, concurrency, deadline, move |i| {
        let (store, credentials) = (store.clone(), credentials.clone());
        async move {
            let account = Account {
                username: format!("u{i}"),
                credentials,
                created_at: 0,
                roles: vec![],
                reservation: None,
            };
            match store.create(account).await? {
                CreateOutcome::Created => Ok(()),
                CreateOutcome::AlreadyExists => bail!("u{i} exists"),
            }
        }
    })
    .await
}

async fn remote(cli: Cli) -> anyhow::Result<()> {
    // Thousands of sockets need more than the usual 1024 descriptors.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let target = Arc::new(Target {
        addr: cli.addr,
        domain: cli.domain.clone(),
        trust: match cli.ca {
            Some(path) => Trust::Pinned(path),
            None => Trust::Insecure,
        },
    });
    let deadline = Instant::now() + Duration::from_secs(cli.deadline);
    match cli.scenario {
        // Runs in-process, from main.
        Scenario::Ledger { .. } | Scenario::CqlInsert { .. } => {
            bail!("this scenario runs in-process")
        }
        Scenario::Register {
            count,
            concurrency,
            prefix,
            invite,
        } => {
            let run = usher::secrets::random_id(4)
                .to_lowercase()
                .replace(['-', '_'], "x");
            let label = if invite.is_some() {
                "register with invite"
            } else {
                "register"
            };
            run_closed_loop(label, count, concurrency, deadline, move |i| {
                let target = target.clone();
                let name = format!("{prefix}{run}n{i}");
                let invite = invite.clone();
                async move {
                    let mut c = target.connect_tls().await?;
                    if let Some(token) = invite {
                        let reply = c.preauth(&token).await?;
                        if reply.attr("type") != Some("result") {
                            bail!("invite refused: {reply:?}");
                        }
                    }
                    let reply = c.register(&name, "load-password-1").await?;
                    if reply.attr("type") != Some("result") {
                        bail!("refused: {reply:?}");
                    }
                    Ok(())
                }
            })
            .await
        }
        Scenario::Login {
            count,
            concurrency,
            mech,
            user,
            password,
        } => {
            target.ensure_account(&user, &password).await?;
            let mech = Mech::from(mech);
            run_closed_loop("login", count, concurrency, deadline, move |_| {
                let target = target.clone();
                let (user, password) = (user.clone(), password.clone());
                async move {
                    let c = target.login(mech, &user, &password).await?;
                    c.close().await?;
                    Ok(())
                }
            })
            .await
        }
        Scenario::Idle {
            connections,
            concurrency,
            user,
            password,
            server_pid,
            hold,
        } => {
            target.ensure_account(&user, &password).await?;
            let before = server_pid.map(rss_kib).transpose()?;
            let held = Arc::new(Mutex::new(Vec::with_capacity(connections)));
            let keep = held.clone();
            run_closed_loop(
                "idle connect",
                connections,
                concurrency,
                deadline,
                move |_| {
                    let (target, keep) = (target.clone(), keep.clone());
                    let (user, password) = (user.clone(), password.clone());
                    async move {
                        let c = target.login(Mech::ScramSha256, &user, &password).await?;
                        keep.lock().await.push(c);
                        Ok(())
                    }
                },
            )
            .await?;
            tokio::time::sleep(Duration::from_secs(hold)).await;
            let open = held.lock().await.len();
            if let (Some(pid), Some(before)) = (server_pid, before) {
                let after = rss_kib(pid)?;
                println!(
                    "idle: {open} authenticated bound connections; server RSS {before} KiB -> {after} KiB \
                     = {:.1} KiB per connection",
                    (after.saturating_sub(before)) as f64 / open.max(1) as f64
                );
            } else {
                println!("idle: {open} authenticated bound connections held {hold}s");
            }
            Ok(())
        }
    }
}
