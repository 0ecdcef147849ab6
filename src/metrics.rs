//! Every metric name in one place, and the Prometheus exporter. The series are
//! recorded through the `metrics` facade where things happen; `/metrics` on
//! the HTTP listener renders them.

use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const CONNECTIONS_OPEN: &str = "usher_connections_open";
pub const CONNECTIONS_TOTAL: &str = "usher_connections_accepted_total";
pub const STANZAS_IN: &str = "usher_stanzas_in_total";
pub const STANZAS_OUT: &str = "usher_stanzas_out_total";
/// Label `outcome`: created, conflict, invalid_invite, forbidden, not_acceptable,
/// rate_limited, unavailable, closed. Label `door`: ibr (in-band, XEP-0077)
/// or web (the browser form).
pub const REGISTRATIONS: &str = "usher_registrations_total";
/// Label `outcome`: valid, invalid, throttled, unavailable.
pub const PREAUTH: &str = "usher_preauth_total";
/// Label `outcome`: success, failure.
pub const SASL: &str = "usher_sasl_auth_total";
/// Label `limit`: registrations_per_ip, registration_queue, max_connections,
/// sasl_failures (a stream closed), auth_failures_per_address (refused at
/// once), auth_failures_per_account (answered late), login_queue,
/// preauth_failures (a stream closed), preauth_failures_per_address (refused
/// without a lookup), validated_invite_max_age (registration refused),
/// stanzas_per_second.
pub const RATE_LIMIT_HITS: &str = "usher_rate_limit_hits_total";
/// Label `condition`: the RFC 6120 stream error condition.
pub const STREAM_ERRORS: &str = "usher_stream_errors_total";
/// From a proposal's arrival at the shard to its outcome.
pub const LEDGER_PROPOSAL_SECONDS: &str = "usher_ledger_proposal_seconds";
/// Commands per Raft entry.
pub const LEDGER_BATCH_SIZE: &str = "usher_ledger_batch_size";
/// Commands per forwarded call to a shard leader on another node.
pub const LEDGER_FORWARD_BATCH_SIZE: &str = "usher_ledger_forward_batch_size";
/// Connections a gRPC listener (label `listener`: peer, admin) closed at
/// once because it had its most open.
pub const LISTENER_CONNECTIONS_REFUSED: &str = "usher_listener_connections_refused_total";
/// One Raft client write: append, replicate, commit, apply.
pub const RAFT_COMMIT_SECONDS: &str = "usher_raft_commit_seconds";
/// Label `op`: get, row, insert, replace, roster_get, roster_item, roster_set,
/// roster_remove, user_data_delete, check; label `result`: ok, error.
pub const STORE_SECONDS: &str = "usher_account_store_seconds";

/// Latency buckets (seconds): sub-millisecond ledger commits up to
/// multi-second database timeouts.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

#[derive(Debug, thiserror::Error)]
#[error("metrics recorder: {0}")]
pub struct MetricsError(String);

/// Installs the process-wide recorder. Once per process; `upkeep` must run
/// beside it.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let err = |e: metrics_exporter_prometheus::BuildError| MetricsError(e.to_string());
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(err)?
        .set_buckets_for_metric(Matcher::Full(LEDGER_BATCH_SIZE.into()), BATCH_BUCKETS)
        .map_err(err)?
        .set_buckets_for_metric(
            Matcher::Full(LEDGER_FORWARD_BATCH_SIZE.into()),
            BATCH_BUCKETS,
        )
        .map_err(err)?
        .install_recorder()
        .map_err(err)?;
    describe();
    Ok(handle)
}

/// Drains the histograms' buckets now and then, so they do not grow unbounded.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

fn describe() {
    describe_gauge!(CONNECTIONS_OPEN, "Client connections open now");
    describe_counter!(CONNECTIONS_TOTAL, "Client connections accepted");
    describe_counter!(STANZAS_IN, "Stanzas received from clients");
    describe_counter!(STANZAS_OUT, "Stanzas sent to clients");
    describe_counter!(REGISTRATIONS, "Account registrations by outcome");
    describe_counter!(PREAUTH, "XEP-0445 invite checks by outcome");
    describe_counter!(SASL, "SASL authentications by mechanism and outcome");
    describe_counter!(RATE_LIMIT_HITS, "Requests refused by a limit");
    describe_counter!(STREAM_ERRORS, "Streams closed with a stream error");
    describe_histogram!(
        LEDGER_PROPOSAL_SECONDS,
        Unit::Seconds,
        "Ledger proposal latency, queueing included"
    );
    describe_histogram!(
        LEDGER_BATCH_SIZE,
        Unit::Count,
        "Ledger commands per Raft entry"
    );
    describe_histogram!(
        LEDGER_FORWARD_BATCH_SIZE,
        Unit::Count,
        "Ledger commands per call forwarded to a shard leader"
    );
    describe_counter!(
        LISTENER_CONNECTIONS_REFUSED,
        "Connections a gRPC listener closed at once, having its most open"
    );
    describe_histogram!(
        RAFT_COMMIT_SECONDS,
        Unit::Seconds,
        "Raft client write latency"
    );
    describe_histogram!(STORE_SECONDS, Unit::Seconds, "Account store call latency");
}

/// The per-stanza counters, looked up in the recorder once instead of on every
/// stanza (the first use comes after `install`, from a client's first stanza).
pub fn stanza_in() {
    static IN: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    IN.get_or_init(|| metrics::counter!(STANZAS_IN))
        .increment(1);
}

pub fn stanza_out() {
    static OUT: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    OUT.get_or_init(|| metrics::counter!(STANZAS_OUT))
        .increment(1);
}

/// Counts a registration attempt's outcome, by the door it came through.
pub fn registration(outcome: &'static str, door: &'static str) {
    metrics::counter!(REGISTRATIONS, "outcome" => outcome, "door" => door).increment(1);
}

pub fn rate_limit_hit(limit: &'static str) {
    metrics::counter!(RATE_LIMIT_HITS, "limit" => limit).increment(1);
}
