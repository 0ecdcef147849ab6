//! The admin door: the gRPC admin API over the invite operations of
//! `issuing` and the cluster membership of `peer`, its TLS, and where its
//! bearer token is kept.

pub mod cluster;
pub mod grpc;
pub mod tls;
pub mod token;

/// Code generated from proto/usher.proto.
pub mod proto {
    tonic::include_proto!("usher.admin.v1");
}
