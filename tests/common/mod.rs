//! Shared by every integration test: start the real `usher` binary on a free
//! port with its own data dir, wait for it, and stop or kill it.

#![allow(dead_code)]

pub mod cluster;
pub mod netns;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use usher::xmpp::{ns, Element};
use usher_load::client::{error_condition, Auth, Mech};
use usher_load::{Client, Trust};

pub const DOMAIN: &str = "localhost";
pub const PASSWORD: &str = "correct horse battery";

pub struct TestNode {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
}

/// The `usher` binary under test. Its own package's tests get it from
/// cargo; the load harness's tests (another package of the workspace) find it
/// beside their own executable, in the same target directory.
pub fn usher_bin() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_usher") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/PROFILE/deps");
    let bin = dir.join("usher");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --bin usher)",
        bin.display()
    );
    bin
}

/// A port that was free a moment ago, above Linux's ephemeral range
/// (32768-60999): a port the kernel hands out (`bind :0`) can be taken again
/// by any outgoing connection of a parallel test before usher binds it, which
/// is how CI once saw "Address already in use". Each process walks the range
/// from its own offset so parallel test binaries rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 61_000;
    const COUNT: u32 = 65_535 - FIRST;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7919);
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (offset.wrapping_add(n)) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}-65535");
}

impl TestNode {
    /// A node with open registration (no invites) and no rate limit.
    pub fn start() -> TestNode {
        Self::start_with(&[])
    }

    /// A node with extra `USHER_*` settings (they override the test defaults).
    ///
    /// A port taken by someone else between `free_port` and usher's bind
    /// gets the node fresh ports and another start, a few times.
    pub fn start_with(env: &[(&str, &str)]) -> TestNode {
        let mut node = Self::launch(env);
        for _ in 0..4 {
            match node.try_wait_ready() {
                Ok(()) => return node,
                Err(log) if log.contains("Address already in use") => {
                    node.child = None;
                    let _ = std::fs::remove_file(node.log_path());
                    node.addr.set_port(free_port());
                    node.admin_addr.set_port(free_port());
                    node.http_addr.set_port(free_port());
                    node.spawn_process();
                }
                Err(log) => panic!("{log}"),
            }
        }
        node.wait_ready();
        node
    }

    /// Starts the process without waiting for it to listen (see `wait_ready`).
    pub fn launch(env: &[(&str, &str)]) -> TestNode {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let mut node = TestNode {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            data_dir,
            _tmp: Some(tmp),
            env: vec![
                ("USHER_REGISTRATION_INVITE_ONLY".into(), "false".into()),
                (
                    "USHER_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE".into(),
                    "0".into(),
                ),
                ("USHER_SCRAM_ITERATIONS".into(), "4096".into()),
                ("USHER_LOG".into(), "usher=debug".into()),
            ],
        };
        // With TEST_CQL_NODE (host:port) set, accounts live in that CQL
        // database, in a keyspace of this node's own.
        if let Ok(cql) = std::env::var("TEST_CQL_NODE") {
            let keyspace = format!("usher_t_{}", unique("").replace('-', "_"));
            node.env.push(("USHER_SCYLLA__NODES".into(), cql));
            node.env.push(("USHER_SCYLLA__KEYSPACE".into(), keyspace));
        }
        for (k, v) in env {
            node.env.retain(|(key, _)| key != k);
            node.env.push(((*k).into(), (*v).into()));
        }
        node.spawn_process();
        node
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(usher_bin());
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("USHER_DATA_DIR", &self.data_dir)
            .env("USHER_C2S_ADDR", self.addr.to_string())
            .env("USHER_ADMIN_ADDR", self.admin_addr.to_string())
            .env("USHER_HTTP_ADDR", self.http_addr.to_string())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.with_file_name("usher.log")
    }

    fn spawn(&mut self) {
        self.spawn_process();
        self.wait_ready();
    }

    fn spawn_process(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start usher");
        self.child = Some(child);
    }

    /// Waits until all ports listen; panics with the log if the node exits.
    pub fn wait_ready(&mut self) {
        if let Err(why) = self.try_wait_ready() {
            panic!("{why}");
        }
    }

    /// Waits until all ports listen; the error says why not, with the log.
    fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let up = |addr| TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok();
            if up(&self.addr) && up(&self.admin_addr) && up(&self.http_addr) {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "usher exited with {status} at start:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "usher did not listen on {} in time:\n{}",
            self.addr,
            self.log()
        ))
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn trust(&self) -> Trust {
        Trust::Pinned(usher::c2s::tls::generated_paths(&self.data_dir, DOMAIN).0)
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        wait_timeout(&mut child, Duration::from_secs(15))
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Changes a setting for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Registers with a fresh single-use invite made through the CLI.
    pub async fn register_via_invite(&self, username: &str, password: &str) {
        let token = self.invite(&[]);
        let mut c = self.with_invite(&token).await;
        let reply = c.register(username, password).await.expect("register");
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        self.spawn();
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.addr, DOMAIN, &self.trust())
            .await
            .expect("connect")
    }

    pub async fn connect_tls(&self) -> Client {
        Client::connect_tls(self.addr, DOMAIN, &self.trust())
            .await
            .expect("connect with TLS")
    }

    /// Registers an account; panics unless the server says yes.
    pub async fn register(&self, username: &str, password: &str) {
        let mut c = self.connect_tls().await;
        let reply = c.register(username, password).await.expect("register");
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    }

    pub async fn auth(&self, mech: Mech, username: &str, password: &str) -> Auth {
        let mut c = self.connect_tls().await;
        c.authenticate(mech, username, password)
            .await
            .expect("authenticate")
    }

    /// Proves the node still serves clients: a full TLS round trip with a ping.
    pub async fn assert_serving(&self) {
        let mut c = self.connect_tls().await;
        let reply = c.request(ping()).await.expect("ping");
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("usher did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl TestNode {
    /// Runs `usher invite ARGS…` against this node.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["invite"];
        full.extend_from_slice(args);
        self.cli_any(&full)
    }

    /// Runs `usher ARGS…` (any admin subcommand) against this node.
    pub fn cli_any(&self, args: &[&str]) -> std::process::Output {
        Command::new(usher_bin())
            .args(args)
            .arg("--server")
            .arg(format!("http://{}", self.admin_addr))
            .arg("--token-file")
            .arg(usher::admin::token::token_path(&self.data_dir))
            .env_remove("USHER_ADMIN_ADDR")
            .output()
            .expect("run the usher CLI")
    }

    /// `usher invite show TOKEN`; panics with the CLI's error if it fails.
    pub fn show(&self, token: &str) -> String {
        let out = self.cli(&["show", token]);
        assert!(
            out.status.success(),
            "usher invite show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// Creates an invite with the CLI; returns its token.
    pub fn invite(&self, args: &[&str]) -> String {
        let mut full = vec!["create"];
        full.extend_from_slice(args);
        let out = self.cli(&full);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        let uri = stdout.lines().last().expect("a URI line");
        uri.split("preauth=")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("no token in {uri}"))
            .to_owned()
    }

    /// A TLS stream that has proved `token`; panics unless the server accepts it.
    pub async fn with_invite(&self, token: &str) -> Client {
        let mut c = self.connect_tls().await;
        let reply = c.preauth(token).await.expect("preauth");
        assert_eq!(
            reply.attr("type"),
            Some("result"),
            "preauth refused: {reply:?}"
        );
        c
    }
}

impl TestNode {
    /// `GET path` on the node's HTTP listener: the status code and body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http_addr, path)
    }

    /// Like `http_get`, as a browser with this User-Agent.
    pub fn http_get_as(&self, path: &str, user_agent: &str) -> (u16, String) {
        http_request(self.http_addr, path, user_agent)
    }

    /// The value of one series on `/metrics`, e.g.
    /// `usher_registrations_total{outcome="created",door="ibr"}`; 0 when absent (a
    /// counter nobody touched yet is not rendered).
    pub fn metric(&self, series: &str) -> f64 {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "{body}");
        metric_value(&body, series).unwrap_or(0.0)
    }
}

/// One plain HTTP/1.1 GET, read to the end (`Connection: close`).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, path, "usher-tests")
}

fn http_request(addr: SocketAddr, path: &str, user_agent: &str) -> (u16, String) {
    let reply = http_exchange(addr, "GET", path, &[("User-Agent", user_agent)], "");
    (reply.status, reply.body)
}

/// An HTTP response: status, header lines, body (de-chunked).
pub struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpReply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request with extra headers and a body, read to the end.
pub fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpReply {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect HTTP");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    s.write_all(request.as_bytes()).expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpReply {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// Finds `series` (name plus labels exactly as rendered) in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A logged-in, bound stream of `user` (password `PASSWORD`).
pub async fn login_as(node: &TestNode, user: &str) -> Client {
    Client::login(
        node.addr,
        DOMAIN,
        &node.trust(),
        Mech::ScramSha1,
        user,
        PASSWORD,
    )
    .await
    .unwrap_or_else(|e| panic!("login {user}: {e}"))
    .0
}

/// An XEP-0050 `execute` of the command `node` on the server, with a form.
pub fn adhoc_execute(node: &str, form: Option<usher::xmpp::dataform::DataForm>) -> Element {
    let mut cmd = Element::new("command", ns::COMMANDS)
        .with_attr("node", node)
        .with_attr("action", "execute");
    if let Some(f) = form {
        cmd.push_child(f.to_element());
    }
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("to", DOMAIN)
        .with_child(cmd)
}

pub fn ping() -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_child(Element::new("ping", ns::PING))
}

/// Asserts an IQ answer is an error with this type, condition and text.
pub fn assert_iq_error(reply: &Element, kind: &str, condition: &str, text: Option<&str>) {
    assert_eq!(reply.attr("type"), Some("error"), "{reply:?}");
    let error = reply.get_child("error", ns::CLIENT).expect("error child");
    assert_eq!(error.attr("type"), Some(kind), "{reply:?}");
    assert_eq!(
        error_condition(reply).as_deref(),
        Some(condition),
        "{reply:?}"
    );
    if let Some(text) = text {
        assert_eq!(usher_load::client::error_text(reply).as_deref(), Some(text));
    }
}

/// A CLI failure: exit 1 and one line on stderr mentioning `needle`.
pub fn assert_cli_error(out: std::process::Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
}

/// The defined condition and text of a stream error element.
pub fn stream_error(el: &Element) -> (String, Option<String>) {
    assert!(el.is("error", ns::STREAM), "not a stream error: {el:?}");
    let condition = el
        .children()
        .find(|c| c.ns() == ns::STREAMS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .expect("a condition");
    let text = el.get_child("text", ns::STREAMS).map(Element::text);
    (condition, text)
}

/// Reads until the server ends the stream; fails if it does not within the client timeout.
pub async fn expect_closed(c: &mut Client) {
    loop {
        match c.next_event().await {
            Ok(usher::xmpp::reader::StreamEvent::Close) | Err(usher_load::ClientError::Closed) => {
                return
            }
            Ok(_) => {}
            Err(e) => panic!("stream did not close: {e}"),
        }
    }
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        usher::secrets::random_id(6)
            .to_lowercase()
            .replace(['-', '_'], "x")
    )
}

pub fn data_path(node: &TestNode, name: &str) -> PathBuf {
    Path::new(&node.data_dir).join(name)
}
