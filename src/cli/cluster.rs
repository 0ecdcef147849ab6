//! `usher cluster …`: members and shards of a cluster, membership changes,
//! the isolation switch for drills, and the nodes' TLS certificates.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::json;

use super::{connect, status_error, Connection};
use usher::admin::proto::{
    AddNodeRequest, ClusterStatusRequest, RemoveNodeRequest, SetIsolatedRequest,
};

#[derive(Subcommand)]
pub enum Action {
    /// Members, and every shard's leader, term, log index and follower lag.
    Status,
    /// Add a running node (same cluster secret and CA) to every shard.
    Add {
        node_id: u64,
        /// host:port of the node's peer API.
        addr: String,
    },
    /// Remove a node from every shard.
    Remove { node_id: u64 },
    /// Fault injection: cut the node this command talks to off its peers.
    Isolate,
    /// Undo `isolate`.
    Heal,
    /// Make the certificates for mutual TLS between the nodes (offline, no
    /// node needed): DIR/ca.pem and DIR/ca.key if absent (else they sign),
    /// DIR/node-N.pem and DIR/node-N.key per --node (replacing any there);
    /// keys mode 0600. Give node N cluster.tls_cert=node-N.pem,
    /// cluster.tls_key=node-N.key and cluster.tls_ca=ca.pem; keep ca.key off
    /// the nodes.
    Certs {
        /// Directory for the files (created if needed).
        #[arg(long)]
        out: PathBuf,
        /// Node id to make a certificate for; repeat for several.
        #[arg(long = "node", required_unless_present = "admin", value_parser = clap::value_parser!(u64).range(1..))]
        nodes: Vec<u64>,
        /// Also DIR/client.pem and DIR/client.key, for tools that call the
        /// peer API (usher-load ledger --peer).
        #[arg(long)]
        client: bool,
        /// Also DIR/admin.pem and DIR/admin.key, for the admin API
        /// (admin_tls.cert, admin_tls.key; the CLI's --ca-file is ca.pem).
        /// The certificate names usher-admin, localhost, 127.0.0.1 and ::1.
        #[arg(long)]
        admin: bool,
        /// Another name the admin certificate carries (a DNS name or an IP
        /// address); repeat for several.
        #[arg(long = "admin-name", requires = "admin")]
        admin_names: Vec<String>,
    },
}

/// `usher cluster certs`: files only, no connection.
fn certs(
    out: &std::path::Path,
    nodes: &[u64],
    client: bool,
    admin: Option<&[String]>,
) -> anyhow::Result<()> {
    let mut made = Vec::new();
    if !nodes.is_empty() || client {
        made.push(
            usher::peer::tls::generate(out, nodes, client)
                .with_context(|| format!("making peer certificates in {}", out.display()))?,
        );
    }
    if let Some(names) = admin {
        made.push(
            usher::admin::tls::generate_admin(out, names)
                .with_context(|| format!("making the admin certificate in {}", out.display()))?,
        );
    }
    if made.iter().any(|m| m.new_ca) {
        println!("made a new cluster CA in {}", out.display());
    } else {
        println!("signed with the CA in {}", out.display());
    }
    for path in made.iter().flat_map(|m| &m.written) {
        println!("wrote {}", path.display());
    }
    Ok(())
}

// Long because it is one flat arm per `usher cluster` subcommand: each arm is
// a request and how its answer is printed, read in place.
pub async fn run(conn: Connection, action: Action) -> anyhow::Result<()> {
    if let Action::Certs {
        out,
        nodes,
        client,
        admin,
        admin_names,
    } = &action
    {
        return certs(out, nodes, *client, admin.then_some(admin_names.as_slice()));
    }
    let mut client = connect(&conn).await?;
    match action {
        Action::Status => {
            let status = client
                .cluster_status(ClusterStatusRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if conn.json {
                let nodes: Vec<_> = status
                    .nodes
                    .iter()
                    .map(|n| {
                        let shards: Vec<_> = n
                            .shards
                            .iter()
                            .map(|s| {
                                json!({
                                    "shard": s.shard,
                                    "leader": s.leader,
                                    "term": s.term,
                                    "last_log_index": s.last_log_index,
                                    "applied_index": s.applied_index,
                                    "voters": s.voters,
                                    "learners": s.learners,
                                    "lag": s.lag,
                                })
                            })
                            .collect();
                        json!({
                            "node_id": n.node_id,
                            "addr": n.addr,
                            "reachable": n.reachable,
                            "error": (!n.error.is_empty()).then_some(&n.error),
                            "isolated": n.isolated,
                            "shards": shards,
                        })
                    })
                    .collect();
                println!("{}", json!({ "nodes": nodes }));
                return Ok(());
            }
            for n in &status.nodes {
                let state = if !n.reachable {
                    format!("unreachable ({})", n.error)
                } else if n.isolated {
                    "isolated".to_owned()
                } else {
                    "up".to_owned()
                };
                println!("node {}  {}  {state}", n.node_id, n.addr);
            }
            // Every shard as its leader reports it (or as this node sees it).
            let Some(me) = status.nodes.first() else {
                return Ok(());
            };
            println!("shard  leader  term  log    applied  voters      lag");
            for s in &me.shards {
                let view = status
                    .nodes
                    .iter()
                    .filter(|n| n.node_id == s.leader)
                    .flat_map(|n| n.shards.iter())
                    .find(|v| v.shard == s.shard)
                    .unwrap_or(s);
                let voters: Vec<String> = view.voters.iter().map(u64::to_string).collect();
                let lag: Vec<String> = view.lag.iter().map(|(id, n)| format!("{id}:{n}")).collect();
                println!(
                    "{:<5}  {:<6}  {:<4}  {:<5}  {:<7}  {:<10}  {}",
                    view.shard,
                    if view.leader == 0 {
                        "-".to_owned()
                    } else {
                        view.leader.to_string()
                    },
                    view.term,
                    view.last_log_index,
                    view.applied_index,
                    voters.join(","),
                    lag.join(" ")
                );
            }
        }
        Action::Add { node_id, addr } => {
            client
                .add_node(AddNodeRequest { node_id, addr })
                .await
                .map_err(status_error)?;
            println!("added node {node_id}");
        }
        Action::Remove { node_id } => {
            client
                .remove_node(RemoveNodeRequest { node_id })
                .await
                .map_err(status_error)?;
            println!("removed node {node_id}");
        }
        Action::Isolate | Action::Heal => {
            let isolated = matches!(action, Action::Isolate);
            client
                .set_isolated(SetIsolatedRequest { isolated })
                .await
                .map_err(status_error)?;
            println!("{}", if isolated { "isolated" } else { "healed" });
        }
        Action::Certs { .. } => unreachable!("handled before connecting"),
    }
    Ok(())
}
