//! The `floor` scenario: the CPU cost of the work no registration can skip,
//! measured with the same code usher runs — PBKDF2 for the stored SCRAM keys,
//! and a TLS handshake with usher's own certificate and settings. From it,
//! the registrations per second a machine could do at best.

use std::time::Instant;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use usher::xmpp::sasl::{HashAlg, ScramKeys};
use usher_load::Trust;

/// Milliseconds of one PBKDF2 run per hash in `hashes`, on one core.
fn pbkdf2_ms(hashes: &[HashAlg], iterations: u32, runs: u32) -> f64 {
    let started = Instant::now();
    for i in 0..runs {
        for alg in hashes {
            let salt = i.to_be_bytes();
            std::hint::black_box(ScramKeys::derive(
                *alg,
                "load-password-1",
                &salt,
                iterations,
            ));
        }
    }
    started.elapsed().as_secs_f64() * 1000.0 / f64::from(runs)
}

/// Milliseconds of CPU for one TLS handshake, client and server both in this
/// thread (so the server's share is at most this).
async fn handshake_ms(runs: u32) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let config = usher::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let acceptor = usher::c2s::tls::acceptor(&config).context("usher's TLS setup")?;
    let cert = usher::c2s::tls::generated_paths(&config.data_dir, config.domain.as_str()).0;
    let client = tokio_rustls::TlsConnector::from(Trust::Pinned(cert).client_config()?);
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let started = Instant::now();
    for _ in 0..runs {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = acceptor.clone();
        let (s, c) = tokio::join!(server.accept(a), client.connect(name.clone(), b));
        let (mut s, mut c) = (s?, c?);
        // One byte each way: the handshake is complete on both sides.
        c.write_all(b"x").await?;
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0 / f64::from(runs))
}

pub async fn run(hashes: &[HashAlg], iterations: u32, json: bool) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pbkdf2 = pbkdf2_ms(hashes, iterations, 200);
    let handshake = handshake_ms(300).await?;
    let per_registration = pbkdf2 + handshake;
    let ceiling = cores as f64 * 1000.0 / per_registration;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "scenario": "floor",
                "cores": cores,
                "iterations": iterations,
                "hashes": hashes.len(),
                "pbkdf2_ms": pbkdf2,
                "tls_handshake_ms": handshake,
                "floor_ms_per_registration": per_registration,
                "ceiling_registrations_per_second": ceiling,
            })
        );
    } else {
        println!(
            "floor: PBKDF2 ({} hash(es), {iterations} iterations) {pbkdf2:.2} ms, TLS handshake \
             (client+server) {handshake:.2} ms per core => {per_registration:.2} ms per registration, \
             at best {ceiling:.0}/s on {cores} cores",
            hashes.len()
        );
    }
    Ok(())
}
