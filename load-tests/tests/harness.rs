//! usher-load itself: clear errors for bad arguments, and a small run of
//! every scenario against a real local usher, checked through `--json`.

// The suite's fixture, of which these tests use only the test node.
#[path = "../../tests/it/fixture/mod.rs"]
#[allow(
    dead_code,
    unused_imports,
    reason = "the `it` suite uses the rest, and is where dead code shows"
)]
mod fixture;

use std::process::{Command, Output};

use fixture::*;

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_usher-load"))
        .args(args)
        .output()
        .expect("run usher-load")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The last JSON line a successful run printed.
fn json(out: Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "usher-load failed: {}\n{stdout}",
        stderr(&out)
    );
    let last = stdout.lines().last().expect("output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let out = load(&["register", "--count", "many"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("--count"), "{}", stderr(&out));

    let out = load(&["--addr", "127.0.0.1:1", "register", "--concurrency", "0"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--concurrency must be at least 1"),
        "{}",
        stderr(&out)
    );

    let out = load(&["register", "--invites-file", "/no/such/file"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read the invites file"),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("invites.txt");
    std::fs::write(
        &file,
        "xmpp:localhost?register;preauth=ok1\nxmpp:localhost?register\n",
    )
    .expect("write");
    let out = load(&["register", "--invites-file", file.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invites.txt:2: an invite URI without preauth=TOKEN"),
        "{}",
        stderr(&out)
    );

    // Against a cluster, the peer API needs its TLS material besides the secret.
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, "0123456789abcdef0123").expect("write");
    let secret = secret.to_str().expect("utf-8");
    let peer = ["ledger", "--peer", "127.0.0.1:1", "--secret-file", secret];
    let out = load(&peer);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--peer needs --peer-tls-dir"),
        "{}",
        stderr(&out)
    );
    let tls_dir = dir.path().to_str().expect("utf-8");
    let out = load(&[&peer[..], &["--peer-tls-dir", tls_dir]].concat());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--peer-tls-dir: cluster.tls_cert")
            && stderr(&out).contains("client.pem"),
        "{}",
        stderr(&out)
    );

    let out = load(&["register", "--invite", "a", "--invites-file", "b"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = load(&["floor", "--hashes", "md5"]);
    assert!(
        stderr(&out).contains("unknown hash 'md5'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_scenario_runs_against_a_local_node() {
    let node = TestNode::builder()
        .no_address_limits()
        .fast_hashing()
        .start();
    let addr = node.addr.to_string();
    let ca = node.trust();
    let usher_load::Trust::Pinned(ca) = ca else {
        panic!("a pinned certificate")
    };
    let ca = ca.to_str().expect("utf-8").to_owned();
    let admin = format!("http://{}", node.admin_addr);
    let token_file = usher::admin::token::token_path(&node.data_dir);
    let token_file = token_file.to_str().expect("utf-8");
    let base = ["--addr", addr.as_str(), "--ca", ca.as_str(), "--json"];
    let with = |rest: &[&str]| -> Vec<String> {
        base.iter().chain(rest).map(|s| (*s).to_owned()).collect()
    };
    let run = |rest: &[&str]| {
        let args = with(rest);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        json(load(&refs))
    };

    // Registrations with invites minted through the admin API, then a login each.
    let r = run(&[
        "register",
        "--count",
        "6",
        "--concurrency",
        "3",
        "--admin",
        &admin,
        "--admin-token-file",
        token_file,
        "--login",
    ]);
    assert_eq!(
        (r["ok"].as_u64(), r["failed"].as_u64()),
        (Some(6), Some(0)),
        "{r}"
    );

    // Invites minted ahead into a file, then registered with.
    let dir = tempfile::tempdir().expect("dir");
    let minted = dir.path().join("minted.txt");
    let m = run(&[
        "mint",
        "--count",
        "5",
        "--admin",
        &admin,
        "--admin-token-file",
        token_file,
        "--out",
        minted.to_str().expect("utf-8"),
    ]);
    assert_eq!(m["minted"].as_u64(), Some(5), "{m}");
    let tokens = std::fs::read_to_string(&minted).expect("minted file");
    assert_eq!(tokens.lines().count(), 5, "{tokens}");
    let r = run(&[
        "register",
        "--count",
        "5",
        "--concurrency",
        "5",
        "--invites-file",
        minted.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        (r["ok"].as_u64(), r["failed"].as_u64()),
        (Some(5), Some(0)),
        "{r}"
    );

    // Registrations with invites from a file of URIs.
    let file = dir.path().join("invites.txt");
    let uris: Vec<String> = (0..4)
        .map(|_| format!("xmpp:localhost?register;preauth={};ibr=y", node.invite(&[])))
        .collect();
    std::fs::write(&file, uris.join("\n")).expect("write");
    let r = run(&[
        "register",
        "--count",
        "4",
        "--concurrency",
        "2",
        "--invites-file",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(r["ok"].as_u64(), Some(4), "{r}");
    // The same invites again: all spent, every attempt refused and counted by kind.
    let out = load(
        &with(&[
            "register",
            "--count",
            "2",
            "--invites-file",
            file.to_str().expect("utf-8"),
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("json"),
    )
    .expect("json");
    assert_eq!(r["failed"].as_u64(), Some(2), "{r}");

    // Logins (the account made with a group invite first), idle connections.
    let group = node.invite(&["--uses", "2"]);
    let r = run(&[
        "login",
        "--count",
        "10",
        "--concurrency",
        "2",
        "--mech",
        "scram-sha-1",
        "--invite",
        &group,
    ]);
    assert_eq!(r["ok"].as_u64(), Some(10), "{r}");
    let pid = node.pid().to_string();
    let r = run(&[
        "idle",
        "--connections",
        "20",
        "--server-pid",
        &pid,
        "--hold",
        "0",
    ]);
    assert_eq!(r["connections"].as_u64(), Some(20), "{r}");
    assert!(r["kib_per_connection"].as_f64().is_some(), "{r}");

    // Exactly-once: 10 clients on a 3-use invite, twice.
    let r = run(&[
        "race",
        "--clients",
        "10",
        "--uses",
        "3",
        "--rounds",
        "2",
        "--admin",
        &admin,
        "--admin-token-file",
        token_file,
    ]);
    assert_eq!(r["created_per_round"], serde_json::json!([3, 3]), "{r}");
    assert_eq!(r["exact"], true);

    // The ledger alone (in-process), and the CPU floor.
    let r = json(load(&[
        "--json",
        "ledger",
        "--count",
        "200",
        "--concurrency",
        "20",
        "--shards",
        "2",
    ]));
    assert_eq!(r["ok"].as_u64(), Some(200), "{r}");
    let r = json(load(&["--json", "floor", "--iterations", "4096"]));
    assert!(
        r["ceiling_registrations_per_second"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{r}"
    );
}
