//! Administration: the invite operations behind the gRPC admin API (and, later,
//! the ad-hoc commands), and the bearer-token check.

pub mod cluster;
pub mod grpc;
pub mod history;
pub mod invites;
pub mod limits;
pub mod token;

/// Code generated from proto/usher.proto.
pub mod proto {
    tonic::include_proto!("usher.admin.v1");
}
