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

mod chat_scenario;
mod floor;
mod invites;
mod ledger_scenario;

use usher_load::client::{Auth, Mech};
use usher_load::{Client, Trust};

#[derive(Parser)]
#[command(name = "usher-load", about = "Load harness for usher")]
struct Cli {
    /// Client addresses of the nodes (comma-separated or repeated); workers
    /// take them in turn.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:5222")]
    addr: Vec<SocketAddr>,
    /// Print the result as one JSON object instead of a line of text.
    #[arg(long)]
    json: bool,
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
        #[arg(long, conflicts_with_all = ["invites_file", "admin"])]
        invite: Option<String>,
        /// One invite per registration, from this file of invite URIs (or
        /// tokens), one per line: works against any server, Prosody included.
        #[arg(long, conflicts_with = "admin")]
        invites_file: Option<PathBuf>,
        /// One single-use invite per registration, minted through usher's
        /// admin API at this URL before the timed phase.
        #[arg(long)]
        admin: Option<String>,
        /// The admin API's bearer token file (DATA_DIR/admin.token).
        #[arg(long, requires = "admin")]
        admin_token_file: Option<PathBuf>,
        /// Log in with the new account after registering (timed with it).
        #[arg(long)]
        login: bool,
    },
    /// Exactly-once under contention: in each round K clients redeem one
    /// invite of M uses at the same instant; every round must create M
    /// accounts. Invites come from usher's admin API.
    Race {
        #[arg(long, default_value_t = 20)]
        clients: usize,
        #[arg(long, default_value_t = 3)]
        uses: u32,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        #[arg(long)]
        admin: String,
        #[arg(long)]
        admin_token_file: PathBuf,
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
        /// Load a running cluster through its peer API (host:port) instead of
        /// an in-process ledger; repeat for several nodes.
        #[arg(long)]
        peer: Vec<String>,
        /// With --peer: send to each shard's leader, or to the given nodes in
        /// turn (followers forward, as for their own registrations).
        #[arg(long, value_enum, default_value = "leaders")]
        through: ledger_scenario::Through,
        /// File holding the cluster secret, with --peer.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// With --peer: directory with the cluster CA and a client certificate
        /// from it (ca.pem, client.pem, client.key; `usher cluster certs
        /// --client`, or CLUSTER_DIR/tls of cluster/local-cluster).
        #[arg(long)]
        peer_tls_dir: Option<PathBuf>,
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
        /// Invite to register that account with, on an invite-only server.
        #[arg(long)]
        invite: Option<String>,
    },
    /// Mints single-use invites through usher's admin API, outside any timed
    /// phase: invites for `register --invites-file` (so minting is not counted
    /// in a registration run), or invites nobody redeems, to load a node with
    /// pending ones. Prints the tokens to --out (one per line) if given.
    Mint {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// usher's admin API URL.
        #[arg(long)]
        admin: String,
        /// The admin API's bearer token file (DATA_DIR/admin.token).
        #[arg(long)]
        admin_token_file: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The CPU floor of a registration on this machine: PBKDF2 for the stored
    /// keys and one TLS handshake, with usher's own code; no server needed.
    Floor {
        #[arg(long, default_value_t = 10_000)]
        iterations: u32,
        /// Hashes derived per password, as usher's scram_hashes.
        #[arg(long, value_delimiter = ',', default_value = "sha-1")]
        hashes: Vec<String>,
    },
    /// Messages between N pairs of logged-in users: a sends to b's bare JID,
    /// b answers to a's full JID; exchanges per second (two messages each)
    /// and their round-trip latency. With several --addr, a and b of a pair
    /// are on different nodes. Raise the server's limits.stanzas_per_second
    /// above what one client sends, or it answers `wait` errors.
    Chat {
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        /// Exchanges in all, over every pair.
        #[arg(long, default_value_t = 10_000)]
        exchanges: usize,
        #[arg(long, default_value = "chat")]
        prefix: String,
        #[arg(long, default_value = "load-password-1")]
        password: String,
        /// Invite to register the accounts with, on an invite-only server.
        #[arg(long)]
        invite: Option<String>,
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
    addrs: Vec<SocketAddr>,
    next: AtomicUsize,
    domain: String,
    trust: Trust,
}

impl Target {
    /// The next node, round-robin.
    fn addr(&self) -> SocketAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.addrs[i % self.addrs.len()]
    }

    async fn connect_tls(&self) -> anyhow::Result<Client> {
        Ok(Client::connect_tls(self.addr(), &self.domain, &self.trust).await?)
    }

    async fn login(&self, mech: Mech, user: &str, password: &str) -> anyhow::Result<Client> {
        let (c, _) =
            Client::login(self.addr(), &self.domain, &self.trust, mech, user, password).await?;
        Ok(c)
    }

    /// Registers `user` (with `invite`, if given) unless it exists already
    /// (checked with `mech`, which the server must offer).
    async fn ensure_account(
        &self,
        mech: Mech,
        user: &str,
        password: &str,
        invite: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut c = self.connect_tls().await?;
        if c.authenticate(mech, user, password).await? == Auth::Success {
            return Ok(());
        }
        let mut c = self.connect_tls().await?;
        if let Some(token) = invite {
            let reply = c.preauth(token).await?;
            if reply.attr("type") != Some("result") {
                bail!("the invite for {user} was refused: {}", condition(&reply));
            }
        }
        let reply = c.register(user, password).await?;
        if reply.attr("type") != Some("result") {
            bail!("could not register {user}: {reply:?}");
        }
        Ok(())
    }
}

/// Runs `op(i)` for i in 0..count with `concurrency` workers; reports rate,
/// latency percentiles and failures by kind (their message), as text or JSON.
/// A live progress line goes to stderr when it is a terminal.
pub(crate) async fn run_closed_loop_as<F, Fut>(
    label: impl std::fmt::Display,
    json: bool,
    count: usize,
    concurrency: usize,
    deadline: Instant,
    op: F,
) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    if concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let label: Arc<str> = label.to_string().into();
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(
        std::collections::BTreeMap::<String, usize>::new(),
    ));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, next, done, errors, hist) = (
            op.clone(),
            next.clone(),
            done.clone(),
            errors.clone(),
            hist.clone(),
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
                        let kind: String = format!("{e:#}").chars().take(80).collect();
                        *errors.lock().await.entry(kind).or_insert(0) += 1;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = {
        let (done, label) = (done.clone(), label.clone());
        tokio::spawn(async move {
            use std::io::IsTerminal;
            if !std::io::stderr().is_terminal() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprint!("\r{label}: {}/{count}", done.load(Ordering::Relaxed));
            }
        })
    };
    for w in workers {
        w.await?;
    }
    progress.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let hist = hist.lock().await;
    let errors = errors.lock().await;
    let failed: usize = errors.values().sum();
    let ok = hist.len();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "scenario": label.as_ref(),
                "ok": ok,
                "failed": failed,
                "errors": *errors,
                "seconds": elapsed,
                "per_second": ok as f64 / elapsed,
                "concurrency": concurrency,
                "latency_ms": {
                    "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99),
                    "max": hist.max() as f64 / 1000.0,
                },
            })
        );
    } else {
        println!(
            "{label}: {ok} ok, {failed} failed in {elapsed:.2}s = {:.1}/s at concurrency {concurrency}; \
             latency ms p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
            ok as f64 / elapsed,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            hist.max() as f64 / 1000.0,
        );
        for (kind, n) in errors.iter() {
            println!("  {n} x {kind}");
        }
    }
    if failed > 0 {
        bail!("{label}: {failed} operations failed");
    }
    Ok(())
}

/// The condition of an error answer, for error counts.
fn condition(reply: &usher::xmpp::Element) -> String {
    usher_load::client::error_condition(reply).unwrap_or_else(|| "no condition".into())
}

/// K clients per round redeem one M-use invite at the same instant.
async fn race(
    target: Arc<Target>,
    clients: usize,
    uses: u32,
    rounds: usize,
    admin: &str,
    token_file: &std::path::Path,
    json: bool,
) -> anyhow::Result<()> {
    if clients == 0 || uses == 0 || rounds == 0 {
        bail!("--clients, --uses and --rounds must be at least 1");
    }
    let tokens = invites::mint(admin, token_file, rounds, uses).await?;
    let run = usher::secrets::random_id(4)
        .to_lowercase()
        .replace(['-', '_'], "x");
    let mut created_per_round = Vec::new();
    for (round, token) in tokens.iter().enumerate() {
        // Everyone has proved the invite before anyone registers.
        let mut streams = Vec::with_capacity(clients);
        for _ in 0..clients {
            let mut c = target.connect_tls().await?;
            let reply = c.preauth(token).await?;
            if reply.attr("type") != Some("result") {
                bail!("round {round}: invite refused: {}", condition(&reply));
            }
            streams.push(c);
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(clients));
        let tasks: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(k, mut c)| {
                let barrier = barrier.clone();
                let name = format!("race{run}r{round}c{k}");
                tokio::spawn(async move {
                    barrier.wait().await;
                    let reply = c.register(&name, "load-password-1").await?;
                    Ok::<bool, anyhow::Error>(reply.attr("type") == Some("result"))
                })
            })
            .collect();
        let mut created = 0u32;
        for t in tasks {
            if t.await?? {
                created += 1;
            }
        }
        created_per_round.push(created);
    }
    let exact = created_per_round.iter().all(|&c| c == uses);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "scenario": "race",
                "clients": clients,
                "uses": uses,
                "rounds": rounds,
                "created_per_round": created_per_round,
                "exact": exact,
            })
        );
    } else {
        println!(
            "race: {rounds} rounds of {clients} clients on a {uses}-use invite; accounts per round: {created_per_round:?}"
        );
    }
    if !exact {
        bail!("a round did not create exactly {uses} accounts");
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
        through,
        secret_file,
        peer_tls_dir,
    } = cli.scenario
    {
        let options = ledger_scenario::Options {
            count,
            concurrency,
            batching: !no_batching,
            shards,
            dir,
            peers: peer,
            through,
            secret_file,
            peer_tls_dir,
            deadline: Instant::now() + Duration::from_secs(cli.deadline),
            json: cli.json,
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
        return runtime.block_on(cql_insert_scenario(node, count, concurrency, cli.json));
    }
    runtime.block_on(remote(cli))
}

async fn cql_insert_scenario(
    node: String,
    count: usize,
    concurrency: usize,
    json: bool,
) -> anyhow::Result<()> {
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
    run_closed_loop_as(
        "cql insert (LWT)",
        json,
        count,
        concurrency,
        deadline,
        move |i| {
            let (store, credentials) = (store.clone(), credentials.clone());
            async move {
                let account = Account {
                    username: usher::xmpp::jid::Username::parse(&format!("u{i}"))?,
                    credentials,
                    created_at: 0,
                    roles: vec![],
                    reservation: None,
                    generation: None,
                };
                match store.create(account).await? {
                    CreateOutcome::Created => Ok(()),
                    CreateOutcome::AlreadyExists => bail!("u{i} exists"),
                }
            }
        },
    )
    .await
}

async fn remote(cli: Cli) -> anyhow::Result<()> {
    // Thousands of sockets need more than the usual 1024 descriptors.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if cli.addr.is_empty() {
        bail!("--addr needs at least one address");
    }
    let target = Arc::new(Target {
        addrs: cli.addr.clone(),
        next: AtomicUsize::new(0),
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
        Scenario::Mint {
            count,
            admin,
            admin_token_file,
            out,
        } => {
            let started = Instant::now();
            let tokens = invites::mint(&admin, &admin_token_file, count, 1).await?;
            let seconds = started.elapsed().as_secs_f64();
            if let Some(path) = &out {
                let mut text = tokens.join("\n");
                text.push('\n');
                std::fs::write(path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            let rate = tokens.len() as f64 / seconds.max(1e-9);
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "scenario": "mint",
                        "minted": tokens.len(),
                        "seconds": seconds,
                        "per_second": rate,
                    })
                );
            } else {
                println!(
                    "mint: {} invites in {seconds:.1}s ({rate:.0}/s)",
                    tokens.len()
                );
            }
            Ok(())
        }
        Scenario::Floor { iterations, hashes } => {
            let algs = hashes
                .iter()
                .map(|h| {
                    usher::xmpp::sasl::HashAlg::from_name(h)
                        .with_context(|| format!("unknown hash '{h}' (sha-1, sha-256)"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            floor::run(&algs, iterations, cli.json).await
        }
        Scenario::Register {
            count,
            concurrency,
            prefix,
            invite,
            invites_file,
            admin,
            admin_token_file,
            login,
        } => {
            let run = usher::secrets::random_id(4)
                .to_lowercase()
                .replace(['-', '_'], "x");
            // One invite per registration, ready before the clock starts.
            let per_registration = match (&invites_file, &admin) {
                (Some(path), _) => Some(invites::read_file(path)?),
                (None, Some(url)) => {
                    let token_file = admin_token_file
                        .as_deref()
                        .context("--admin needs --admin-token-file")?;
                    Some(invites::mint(url, token_file, count, 1).await?)
                }
                (None, None) => None,
            };
            if let Some(tokens) = &per_registration {
                if tokens.len() < count {
                    bail!(
                        "{count} registrations need {count} invites; there are {}",
                        tokens.len()
                    );
                }
            }
            let per_registration = Arc::new(per_registration);
            let label = match (&invite, per_registration.is_some(), login) {
                (_, true, true) => "register (one invite each) + login",
                (_, true, false) => "register (one invite each)",
                (Some(_), _, true) => "register with invite + login",
                (Some(_), _, false) => "register with invite",
                (None, _, true) => "register + login",
                (None, _, false) => "register",
            };
            let json = cli.json;
            run_closed_loop_as(label, json, count, concurrency, deadline, move |i| {
                let target = target.clone();
                let name = format!("{prefix}{run}n{i}");
                let token = per_registration
                    .as_ref()
                    .as_ref()
                    .map(|t| t[i].clone())
                    .or_else(|| invite.clone());
                async move {
                    let mut c = target.connect_tls().await?;
                    if let Some(token) = token {
                        let reply = c.preauth(&token).await?;
                        if reply.attr("type") != Some("result") {
                            bail!("invite refused: {}", condition(&reply));
                        }
                    }
                    let reply = c.register(&name, "load-password-1").await?;
                    if reply.attr("type") != Some("result") {
                        bail!("registration refused: {}", condition(&reply));
                    }
                    if login {
                        let c = target
                            .login(Mech::ScramSha1, &name, "load-password-1")
                            .await?;
                        c.close().await?;
                    }
                    Ok(())
                }
            })
            .await
        }
        Scenario::Race {
            clients,
            uses,
            rounds,
            admin,
            admin_token_file,
        } => {
            race(
                target,
                clients,
                uses,
                rounds,
                &admin,
                &admin_token_file,
                cli.json,
            )
            .await
        }
        Scenario::Login {
            count,
            concurrency,
            mech,
            user,
            password,
            invite,
        } => {
            let mech = Mech::from(mech);
            target
                .ensure_account(mech, &user, &password, invite.as_deref())
                .await?;
            run_closed_loop_as("login", cli.json, count, concurrency, deadline, move |_| {
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
        Scenario::Chat {
            pairs,
            exchanges,
            prefix,
            password,
            invite,
        } => {
            let options = chat_scenario::Options {
                pairs,
                exchanges,
                prefix,
                password,
                invite,
                json: cli.json,
            };
            chat_scenario::run(target, options, deadline).await
        }
        Scenario::Idle {
            connections,
            concurrency,
            user,
            password,
            server_pid,
            hold,
        } => {
            target
                .ensure_account(Mech::ScramSha1, &user, &password, None)
                .await?;
            let before = server_pid.map(rss_kib).transpose()?;
            let held = Arc::new(Mutex::new(Vec::with_capacity(connections)));
            let keep = held.clone();
            run_closed_loop_as(
                "idle connect",
                cli.json,
                connections,
                concurrency,
                deadline,
                move |_| {
                    let (target, keep) = (target.clone(), keep.clone());
                    let (user, password) = (user.clone(), password.clone());
                    async move {
                        // SCRAM-SHA-1: what every server offers (Prosody too).
                        let c = target.login(Mech::ScramSha1, &user, &password).await?;
                        keep.lock().await.push(c);
                        Ok(())
                    }
                },
            )
            .await?;
            tokio::time::sleep(Duration::from_secs(hold)).await;
            let open = held.lock().await.len();
            if let (Some(pid), Some(before), true) = (server_pid, before, cli.json) {
                let after = rss_kib(pid)?;
                println!(
                    "{}",
                    serde_json::json!({
                        "scenario": "idle",
                        "connections": open,
                        "rss_before_kib": before,
                        "rss_after_kib": after,
                        "kib_per_connection":
                            after.saturating_sub(before) as f64 / open.max(1) as f64,
                    })
                );
            } else if let (Some(pid), Some(before)) = (server_pid, before) {
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
