//! The admin API inside TLS: a node with `admin_tls` serves only TLS, the CLI
//! checks its certificate by the CA it is given, and neither side lets the
//! admin token cross a network in clear.

use std::path::Path;
use std::process::Output;

use crate::fixture::{usher_command, TestNode};

/// `usher cluster certs --admin --out DIR`; panics with its error.
fn admin_certs(dir: &Path) {
    let out = usher_command()
        .args(["cluster", "certs", "--admin", "--out"])
        .arg(dir)
        .output()
        .expect("run usher cluster certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `usher invite create` against `server` with these extra flags.
fn create(node: &TestNode, server: &str, flags: &[&str]) -> Output {
    usher_command()
        .args(["invite", "create", "--server", server, "--token-file"])
        .arg(usher::admin::token::token_path(&node.data_dir))
        .args(flags)
        .output()
        .expect("run the usher CLI")
}

/// A node serving its admin API with certificates from `usher cluster certs
/// --admin`, and the directory they are in (ca.pem checks them).
fn node_with_admin_tls() -> (tempfile::TempDir, TestNode) {
    let certs = tempfile::tempdir().unwrap();
    admin_certs(certs.path());
    let path = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
    let node = TestNode::builder()
        .set("USHER_ADMIN_TLS__CERT", &path("admin.pem"))
        .set("USHER_ADMIN_TLS__KEY", &path("admin.key"))
        .start();
    (certs, node)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_node_with_admin_tls_serves_the_cli_only_inside_tls() {
    let (certs, node) = node_with_admin_tls();
    let path = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
    let https = format!("https://{}", node.admin_addr);
    let ca = path("ca.pem");

    let made = create(&node, &https, &["--ca-file", &ca]);
    assert!(made.status.success(), "{}", stderr(&made));
    assert!(String::from_utf8_lossy(&made.stdout).contains("preauth="));
    // Reached by an address the certificate does not name, checked by its
    // fixed name instead.
    let by_name = create(
        &node,
        &https,
        &["--ca-file", &ca, "--tls-server-name", "usher-admin"],
    );
    assert!(by_name.status.success(), "{}", stderr(&by_name));

    // Plain gRPC to the TLS port gets nowhere.
    let plain = create(&node, &format!("http://{}", node.admin_addr), &[]);
    assert!(!plain.status.success());
    // A certificate from another CA, or for another name, is refused.
    let other = tempfile::tempdir().unwrap();
    admin_certs(other.path());
    let foreign_ca = other.path().join("ca.pem").to_string_lossy().into_owned();
    let foreign = create(&node, &https, &["--ca-file", &foreign_ca]);
    assert!(!foreign.status.success());
    assert!(
        stderr(&foreign).contains("cannot reach the admin API"),
        "{}",
        stderr(&foreign)
    );
    let misnamed = create(
        &node,
        &https,
        &["--ca-file", &ca, "--tls-server-name", "elsewhere.example"],
    );
    assert!(!misnamed.status.success());
    assert!(
        stderr(&misnamed).contains("not valid for name"),
        "{}",
        stderr(&misnamed)
    );
    // https without a CA to check by: said before anything is sent.
    let no_ca = create(&node, &https, &[]);
    assert!(!no_ca.status.success());
    assert!(stderr(&no_ca).contains("--ca-file"), "{}", stderr(&no_ca));
    // Only the two good calls made invites.
    let listed = node.cli_any(&["invite", "list"]);
    assert!(
        !listed.status.success(),
        "the fixture's plain http must fail on a TLS port too"
    );
    let listed = usher_command()
        .args([
            "invite",
            "list",
            "--json",
            "--server",
            &https,
            "--ca-file",
            &ca,
            "--token-file",
        ])
        .arg(usher::admin::token::token_path(&node.data_dir))
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(text.matches("\"token\"").count(), 2, "{text}");
}

#[test]
fn a_handshake_that_never_comes_is_cut_off() {
    use std::io::Read as _;
    use std::time::{Duration, Instant};
    let (_certs, node) = node_with_admin_tls();
    // Connect and say nothing: the node hangs up after its 5 s handshake limit.
    let mut idle = std::net::TcpStream::connect(node.admin_addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let read = idle.read(&mut [0u8; 64]);
    let waited = started.elapsed();
    let closed = match &read {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(closed, "{read:?} after {waited:?}");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}

#[test]
fn the_token_never_goes_in_clear_beyond_loopback() {
    // The CLI refuses before it connects (10.0.0.1 is never dialled).
    let out = usher_command()
        .args([
            "invite",
            "list",
            "--server",
            "http://10.0.0.1:5290",
            "--token-file",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("in clear to 10.0.0.1"),
        "{}",
        stderr(&out)
    );
    // And a node refuses to listen for it there without TLS.
    let out = usher_command()
        .arg("check-config")
        .env("USHER_ADMIN_ADDR", "0.0.0.0:5290")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("admin_addr") && err.contains("admin_tls.cert"),
        "{err}"
    );
}
