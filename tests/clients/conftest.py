"""Shared fixtures for the real-client tests: a fresh usher node per test."""

import itertools
import os
import pathlib
import socket
import subprocess
import tempfile
import time

import pytest

# The talk tests' scenarios assert outside test modules; show their values too.
pytest.register_assert_rewrite("scenarios")

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOMAIN = "localhost"


def usher_binary() -> str:
    explicit = os.environ.get("USHER_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "usher")


_FIRST_PORT = 61000
_next_port = itertools.count(os.getpid() * 7919)


def free_port() -> int:
    """A port that was free a moment ago, above Linux's ephemeral range: one
    the kernel handed out could be taken by any outgoing connection before
    usher binds it."""
    for _ in range(65535 - _FIRST_PORT):
        port = _FIRST_PORT + next(_next_port) % (65535 - _FIRST_PORT)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port above 61000")


class Node:
    host = "127.0.0.1"

    def __init__(self, env_overrides):
        self.tmp = tempfile.TemporaryDirectory()
        self.data_dir = pathlib.Path(self.tmp.name) / "data"
        self.log_path = pathlib.Path(self.tmp.name) / "usher.log"
        self.proc = None
        # A port taken by someone else between free_port and usher's bind
        # gets fresh ports and another start, a few times.
        for attempt in range(5):
            self._pick_ports(env_overrides)
            try:
                self.start()
                return
            except RuntimeError as e:
                if attempt == 4 or "Address already in use" not in str(e):
                    raise
                self.log_path.unlink(missing_ok=True)

    def _pick_ports(self, env_overrides):
        self.port = free_port()
        self.admin_port = free_port()
        self.http_port = free_port()
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "USHER_DATA_DIR": str(self.data_dir),
            "USHER_C2S_ADDR": f"127.0.0.1:{self.port}",
            "USHER_ADMIN_ADDR": f"127.0.0.1:{self.admin_port}",
            "USHER_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "USHER_WEB_BASE_URL": f"http://127.0.0.1:{self.http_port}",
            "USHER_REGISTRATION_INVITE_ONLY": "false",
            "USHER_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE": "0",
            # Every test client comes from 127.0.0.1.
            "USHER_LIMITS__PRE_AUTH_CONNECTIONS_PER_ADDRESS": "1000000",
            "USHER_LOG": "usher=debug",
        }
        self.env.update(env_overrides)

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [usher_binary(), "serve"], env=self.env, stdout=subprocess.DEVNULL, stderr=log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"usher exited at start:\n{self.log()}")
            ports = (self.port, self.admin_port, self.http_port)
            try:
                for port in ports:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"usher did not listen in time:\n{self.log()}")

    def invite(self, *args: str) -> str:
        """Creates an invite with the usher CLI; returns its token."""
        return self.invite_links(*args)[1].split("preauth=")[1].split(";")[0]

    def invite_links(self, *args: str) -> tuple:
        """Creates an invite with the usher CLI: (landing page URL, xmpp: URI)."""
        out = self.cli("invite", "create", *args)
        assert out.returncode == 0, out.stderr
        landing, uri = out.stdout.strip().splitlines()[-2:]
        return landing, uri

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Runs `usher ARGS` against this node's admin API."""
        return subprocess.run(
            [usher_binary(), *args,
             "--server", f"http://127.0.0.1:{self.admin_port}",
             "--token-file", str(self.data_dir / "admin.token")],
            capture_output=True, text=True, timeout=30, env={"PATH": self.env["PATH"]},
        )

    @property
    def cert(self) -> pathlib.Path:
        return self.data_dir / "tls" / f"{DOMAIN}.crt"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.tmp.cleanup()


@pytest.fixture
def node():
    n = Node({})
    yield n
    n.stop()


@pytest.fixture
def invite_node():
    """A node in its default mode: registration by invitation only."""
    n = Node({"USHER_REGISTRATION_INVITE_ONLY": "true"})
    yield n
    n.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "cql: needs a CQL database (TEST_CQL_NODE)")


# The client libraries of the talk tests (talk.py), by name: "lib" is one,
# "pair" is alice's and bob's ("slixmpp-smack": alice on slixmpp, bob on Smack).
# Both are parametrized indirectly by the tests.


@pytest.fixture(scope="session")
def smack_runner():
    """One JVM for every Smack client of the session (built on first use)."""
    from talk import smack_runner_for_session

    runner = smack_runner_for_session()
    yield runner
    runner.stop()


def _library(request, name, tmp_path):
    import talk

    if name == "slixmpp":
        return talk.Slixmpp()
    if name == "smack":
        return talk.Smack(request.getfixturevalue("smack_runner"), tmp_path / "smack-profiles")
    raise ValueError(name)


@pytest.fixture
def lib(request, tmp_path):
    return _library(request, request.param, tmp_path)


@pytest.fixture
def pair(request, tmp_path):
    from scenarios import Pair

    alice, bob = request.param.split("-")
    return Pair(_library(request, alice, tmp_path), _library(request, bob, tmp_path))
