//! Ledger errors across the peer boundary: a shard's failure on the node that
//! was asked arrives on the asking node as the same `LedgerError`, so the one
//! forwarding loop decides alike for local and remote failures.

use std::time::Duration;

use openraft::BasicNode;

use super::proto::ledger_failure::Kind;
use super::proto::{Leader, LedgerFailure};
use crate::ledger::LedgerError;

pub fn to_proto(e: &LedgerError) -> LedgerFailure {
    let (kind, leader) = match e {
        LedgerError::NotLeader { leader, .. } => (
            Kind::NotLeader,
            leader.as_ref().map(|(id, node)| Leader {
                id: *id,
                addr: node.addr.clone(),
            }),
        ),
        LedgerError::Timeout { .. } => (Kind::Timeout, None),
        LedgerError::Unreachable { .. } | LedgerError::NoPeers => (Kind::Unreachable, None),
        LedgerError::Refused { .. } => (Kind::Refused, None),
        LedgerError::Stopped { .. } => (Kind::Stopped, None),
        LedgerError::NoSuchShard(_) => (Kind::NoSuchShard, None),
        LedgerError::Storage(_) => (Kind::Storage, None),
        LedgerError::Config(_) => (Kind::Config, None),
    };
    LedgerFailure {
        kind: kind as i32,
        message: e.to_string(),
        leader,
    }
}

/// The failure `f` that the node at `addr` reported for `shard`.
pub fn from_proto(shard: u32, addr: &str, f: LedgerFailure) -> LedgerError {
    let remote = |what: &str| format!("{what} on {addr}: {}", f.message);
    match Kind::try_from(f.kind).unwrap_or(Kind::Unspecified) {
        Kind::NotLeader => LedgerError::NotLeader {
            shard,
            leader: f
                .leader
                .filter(|l| l.id != 0)
                .map(|l| (l.id, BasicNode { addr: l.addr })),
        },
        // The remote leader's own step timed out: the write may have happened.
        Kind::Timeout => LedgerError::Timeout {
            shard,
            what: "a forwarded step",
            after: Duration::ZERO,
        },
        Kind::Unreachable => LedgerError::Unreachable {
            addr: addr.to_owned(),
            reason: f.message,
        },
        Kind::Refused => LedgerError::Refused {
            shard,
            reason: remote("refused"),
        },
        Kind::Stopped => LedgerError::Stopped { shard },
        Kind::NoSuchShard => LedgerError::NoSuchShard(shard),
        Kind::Storage => LedgerError::Storage(remote("storage")),
        Kind::Config | Kind::Unspecified => LedgerError::Config(remote("configuration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_survive_the_trip() {
        for e in [
            LedgerError::NotLeader {
                shard: 3,
                leader: Some((2, BasicNode::new("10.0.0.2:5270"))),
            },
            LedgerError::NotLeader {
                shard: 3,
                leader: None,
            },
            LedgerError::Stopped { shard: 3 },
            LedgerError::NoSuchShard(3),
        ] {
            assert_eq!(from_proto(3, "n2", to_proto(&e)), e);
        }
        let t = from_proto(
            3,
            "n2",
            to_proto(&LedgerError::Timeout {
                shard: 3,
                what: "a proposal",
                after: Duration::from_secs(5),
            }),
        );
        assert!(matches!(t, LedgerError::Timeout { shard: 3, .. }));
        let s = from_proto(3, "n2", to_proto(&LedgerError::Storage("disk full".into())));
        assert!(
            matches!(&s, LedgerError::Storage(m) if m.contains("n2") && m.contains("disk full"))
        );
    }
}
