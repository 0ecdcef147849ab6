"""The Helm chart (helm/usher): `helm lint` and `helm template` with the default
values and the 3-node production example, the rendered manifests parsed and
checked, the pods' start-up script run for real, and the rendered settings loaded
by the real `usher check-config`.

HELM names the helm binary (scripts/test-all installs a pinned one); USHER_BIN
the usher binary."""

import base64
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest
import yaml

# The client tests' fixtures module knows where the usher binary is.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "clients"))
from conftest import Node, usher_binary  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "usher"
PRODUCTION = CHART / "values-production.yaml"
HELM = os.environ.get("HELM", "helm")
RELEASE = "chat"
NAMESPACE = "xmpp"
PEERS = f"{RELEASE}-usher-peers.{NAMESPACE}.svc.cluster.local"


def helm(*args, check=True):
    out = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def render(*values_args):
    out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args)
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    return by_kind


def production():
    return render("-f", str(PRODUCTION))


def container(manifests):
    (sts,) = manifests["StatefulSet"].values()
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    return sts, c


def plain_env(c):
    return {e["name"]: e["value"] for e in c["env"] if "value" in e}


def secret_env(c):
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]
            if "secretKeyRef" in e.get("valueFrom", {})}


@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION)]], ids=["default", "production"])
def test_helm_lint_passes(values):
    out = helm("lint", str(CHART), "--strict", *values)
    assert "0 chart(s) failed" in out.stdout


def test_default_values_render_one_node_with_embedded_storage():
    m = render()
    sts, c = container(m)
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"c2s": 5222, "http": 5280, "admin": 5290}  # no peer port alone
    env = plain_env(c)
    assert env["USHER_HTTP_ADDR"] == "0.0.0.0:5280"
    assert env["USHER_DATA_DIR"] == "/var/lib/usher"
    assert "USHER_SCYLLA__NODES" not in env and "USHER_CLUSTER__PEER_ADDR" not in env
    assert set(secret_env(c)) == {"USHER_ADMIN_TOKEN"}
    # No peers, no peer TLS.
    assert not any(k.startswith("USHER_CLUSTER__TLS") for k in env)
    # The admin port listens on the pod's addresses: inside TLS, one node too.
    assert set(m["Secret"]) == {f"{RELEASE}-usher", f"{RELEASE}-usher-admin-tls"}
    assert env["USHER_ADMIN_TLS__CERT"] == "/etc/usher/admin-tls/tls.crt"
    # Probes on the HTTP port: /ready gates start-up and traffic, /health liveness.
    assert c["startupProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # Raft data (and here the accounts) on a persistent volume.
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    mounts = {v["name"]: v["mountPath"] for v in c["volumeMounts"]}
    assert mounts["data"] == "/var/lib/usher"
    assert mounts["config"] == "/etc/usher/usher.toml"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # One node: no disruption budget to keep, no ServiceMonitor or Ingress asked for.
    assert "PodDisruptionBudget" not in m
    assert "ServiceMonitor" not in m and "Ingress" not in m
    assert "--bootstrap" not in c["args"][0] and "--join" not in c["args"][0]


def test_services_expose_clients_pages_admin_and_peers():
    m = production()
    svc = m["Service"]
    client = svc[f"{RELEASE}-usher"]["spec"]
    assert client["type"] == "LoadBalancer"
    assert client["externalTrafficPolicy"] == "Local"
    assert client["ports"] == [{"name": "c2s", "port": 5222, "targetPort": "c2s"}]
    http = svc[f"{RELEASE}-usher-http"]["spec"]
    assert http["type"] == "ClusterIP" and http["ports"][0]["targetPort"] == "http"
    admin = svc[f"{RELEASE}-usher-admin"]["spec"]
    assert admin["type"] == "ClusterIP" and admin["ports"][0]["port"] == 5290
    peers = svc[f"{RELEASE}-usher-peers"]["spec"]
    assert peers["clusterIP"] == "None"
    assert peers["publishNotReadyAddresses"] is True
    assert {"name": "peer", "port": 5270, "targetPort": 5270} in peers["ports"]
    sts, _ = container(m)
    assert sts["spec"]["serviceName"] == f"{RELEASE}-usher-peers"
    selector = sts["spec"]["selector"]["matchLabels"]
    for s in svc.values():
        assert s["spec"]["selector"] == selector
    # The ServiceMonitor finds the http Service only, and scrapes /metrics.
    (monitor,) = m["ServiceMonitor"].values()
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "http"
    assert monitor["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics", "interval": "30s"}
    # The Ingress routes the pages, never /metrics.
    (ingress,) = m["Ingress"].values()
    paths = [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]]
    assert paths == ["/invite/", "/register/"]


def test_production_values_render_a_three_node_cluster():
    m = production()
    sts, c = container(m)
    assert sts["spec"]["replicas"] == 3
    (pdb,) = m["PodDisruptionBudget"].values()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["peer"] == 5270
    env = plain_env(c)
    assert env["USHER_SCYLLA__NODES"] == "scylla-client.scylla.svc:9042"
    assert env["USHER_CLUSTER__PEER_ADDR"] == "0.0.0.0:5270"
    assert env["USHER_CLUSTER__REPLICATION"] == "3"
    assert env["USHER_WEB_BASE_URL"] == "https://join.example.org"
    assert env["USHER_TLS__CERT"] == "/etc/usher/tls/tls.crt"
    secrets = secret_env(c)
    assert secrets["USHER_CLUSTER__SECRET"] == {"name": f"{RELEASE}-usher", "key": "cluster-secret"}
    assert secrets["USHER_ADMIN_TOKEN"]["key"] == "admin-token"
    secret = m["Secret"][f"{RELEASE}-usher"]
    assert set(secret["data"]) == {"admin-token", "cluster-secret"}
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "usher-xmpp-tls"
    # Mutual TLS between the pods, from the chart's generated Secret.
    assert env["USHER_CLUSTER__TLS_CERT"] == "/etc/usher/peer-tls/tls.crt"
    assert env["USHER_CLUSTER__TLS_KEY"] == "/etc/usher/peer-tls/tls.key"
    assert env["USHER_CLUSTER__TLS_CA"] == "/etc/usher/peer-tls/ca.crt"
    assert volumes["peer-tls"]["secret"]["secretName"] == f"{RELEASE}-usher-peer-tls"
    assert volumes["peer-tls"]["secret"]["defaultMode"] == 0o440
    mounts = {v["name"]: v for v in c["volumeMounts"]}
    assert mounts["peer-tls"] == {"name": "peer-tls", "mountPath": "/etc/usher/peer-tls",
                                  "readOnly": True}
    peer_tls = m["Secret"][f"{RELEASE}-usher-peer-tls"]
    assert peer_tls["type"] == "kubernetes.io/tls"
    assert set(peer_tls["data"]) == {"ca.crt", "tls.crt", "tls.key"}


def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v openssl"], capture_output=True)
                    .returncode != 0, reason="needs openssl")
def test_the_generated_peer_certificate_chains_to_its_ca_and_names_usher_peer():
    data = production()["Secret"][f"{RELEASE}-usher-peer-tls"]["data"]
    files = {k: base64.b64decode(v).decode() for k, v in data.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (pathlib.Path(tmp) / name).write_text(text)
        ca, crt, key = (str(pathlib.Path(tmp) / n) for n in ("ca.crt", "tls.crt", "tls.key"))
        # Good for serving and for calling: every node does both.
        for purpose in ("sslserver", "sslclient"):
            out = openssl("verify", "-CAfile", ca, "-purpose", purpose, crt)
            assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
        out = openssl("x509", "-in", crt, "-noout", "-ext", "subjectAltName")
        assert "DNS:usher-peer" in out.stdout, out.stdout + out.stderr
        # P-256, not RSA: handshakes from anyone on the pod network stay cheap.
        assert files["tls.key"].startswith("-----BEGIN EC PRIVATE KEY-----")
        # The key is the certificate's.
        cert_pub = openssl("x509", "-in", crt, "-noout", "-pubkey").stdout
        key_pub = openssl("pkey", "-in", key, "-pubout").stdout
        assert cert_pub and cert_pub == key_pub
    # Each render without an installed release makes a new CA; an installed one
    # is read back (lookup), which `helm template` cannot show.
    again = production()["Secret"][f"{RELEASE}-usher-peer-tls"]["data"]
    assert again["ca.crt"] != data["ca.crt"]


def test_the_generated_admin_certificate_serves_the_cli_in_a_pod():
    """The chart's admin TLS Secret, the pod's admin settings and the CLI as
    `kubectl exec … usher invite create` runs it (no --server, no --ca-file):
    a real node serves TLS with those files and the CLI checks it by the CA."""
    m = production()
    _, c = container(m)
    env = plain_env(c)
    assert env["USHER_ADMIN_ADDR"] == "0.0.0.0:5290"
    mounts = {v["name"]: v for v in c["volumeMounts"]}
    assert mounts["admin-tls"]["mountPath"] == "/etc/usher/admin-tls"
    data = m["Secret"][f"{RELEASE}-usher-admin-tls"]["data"]
    assert base64.b64decode(data["tls.key"]).startswith(b"-----BEGIN EC PRIVATE KEY-----")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in data.items():
            (pathlib.Path(tmp) / name).write_bytes(base64.b64decode(text))
        tls = {k: v.replace("/etc/usher/admin-tls", tmp) for k, v in env.items()
               if k.startswith("USHER_ADMIN_TLS__")}
        assert set(tls) == {"USHER_ADMIN_TLS__CERT", "USHER_ADMIN_TLS__KEY", "USHER_ADMIN_TLS__CA"}
        node = Node({k: v for k, v in tls.items() if k != "USHER_ADMIN_TLS__CA"})
        try:
            pod_env = {"PATH": os.environ.get("PATH", ""), **tls,
                       "USHER_DATA_DIR": str(node.data_dir),
                       # As the pod has it (only the node binds it): the CLI
                       # reaches the wildcard address on 127.0.0.1.
                       "USHER_ADMIN_ADDR": f"0.0.0.0:{node.admin_port}"}

            def cli(*args, env=pod_env):
                return subprocess.run([usher_binary(), "invite", "create", *args],
                                      capture_output=True, text=True, timeout=30, env=env)

            out = cli("--role", "admin")
            assert out.returncode == 0, out.stderr
            assert "preauth=" in out.stdout
            # The Service's name, reached at 127.0.0.1, is in the certificate too.
            service = f"{RELEASE}-usher-admin.{NAMESPACE}.svc"
            assert cli("--tls-server-name", service).returncode == 0
            # A name it does not carry, or in clear: refused, nothing created.
            wrong = cli("--tls-server-name", "elsewhere.example")
            assert wrong.returncode != 0 and "cannot reach the admin API" in wrong.stderr
            plain = cli("--server", f"http://127.0.0.1:{node.admin_port}")
            assert plain.returncode != 0
            no_ca = {k: v for k, v in pod_env.items() if k != "USHER_ADMIN_TLS__CA"}
            out = cli(env=no_ca)
            assert out.returncode != 0 and "--ca-file" in out.stderr, out.stderr
        finally:
            node.stop()


def test_peer_tls_from_an_existing_secret():
    m = render("-f", str(PRODUCTION), "--set", "peerTls.existingSecret=my-peer-tls")
    assert f"{RELEASE}-usher-peer-tls" not in m["Secret"]
    sts, _ = container(m)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["peer-tls"]["secret"]["secretName"] == "my-peer-tls"


def test_admin_tls_from_an_existing_secret():
    m = render("--set", "adminTls.existingSecret=my-admin-tls")
    assert f"{RELEASE}-usher-admin-tls" not in m["Secret"]
    sts, _ = container(m)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["admin-tls"]["secret"] == {"secretName": "my-admin-tls", "defaultMode": 0o440}


def run_start_script(c, pod, extra_env):
    """Runs the container's start-up script under sh with a stand-in `usher`
    that prints the arguments and the cluster variables it was given."""
    with tempfile.TemporaryDirectory() as bin_dir:
        fake = pathlib.Path(bin_dir) / "usher"
        fake.write_text(
            "#!/bin/sh\n"
            'echo "args=$*"\n'
            'echo "node_id=${USHER_CLUSTER__NODE_ID:-}"\n'
            'echo "advertise=${USHER_CLUSTER__ADVERTISE:-}"\n'
        )
        fake.chmod(0o755)
        assert c["command"] == ["/bin/sh", "-ec"]
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "POD_NAME": pod, **extra_env}
        out = subprocess.run(["/bin/sh", "-ec", c["args"][0]], env=env,
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        return dict(line.split("=", 1) for line in out.stdout.strip().splitlines())


def test_pod_zero_bootstraps_and_the_others_join_through_it():
    _, c = container(production())
    first = run_start_script(c, f"{RELEASE}-usher-0", {})
    assert first["args"] == "serve --config /etc/usher/usher.toml --bootstrap"
    assert first["node_id"] == "1"
    assert first["advertise"] == f"{RELEASE}-usher-0.{PEERS}:5270"
    third = run_start_script(c, f"{RELEASE}-usher-2", {})
    assert third["args"] == f"serve --config /etc/usher/usher.toml --join {RELEASE}-usher-0.{PEERS}:5270"
    assert third["node_id"] == "3"
    assert third["advertise"] == f"{RELEASE}-usher-2.{PEERS}:5270"
    # Rebuilding pod 0: it joins through pod 1 instead of founding a second cluster.
    _, c = container(render("-f", str(PRODUCTION), "--set", "cluster.bootstrap=false"))
    rebuilt = run_start_script(c, f"{RELEASE}-usher-0", {})
    assert rebuilt["args"] == f"serve --config /etc/usher/usher.toml --join {RELEASE}-usher-1.{PEERS}:5270"
    # A single node runs plain `serve`.
    _, c = container(render())
    alone = run_start_script(c, f"{RELEASE}-usher-0", {})
    assert alone == {"args": "serve --config /etc/usher/usher.toml", "node_id": "", "advertise": ""}


@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION)]], ids=["default", "production"])
def test_usher_accepts_the_rendered_settings(values):
    """The ConfigMap's usher.toml plus the pod's environment (secrets resolved
    from the rendered Secret) pass the real usher's validation, as pod 1 sees them."""
    m = render(*values)
    _, c = container(m)
    (config_map,) = m["ConfigMap"].values()
    secret = m["Secret"][f"{RELEASE}-usher"]
    env = {"PATH": os.environ.get("PATH", "")}
    env.update(plain_env(c))
    for name, ref in secret_env(c).items():
        env[name] = base64.b64decode(secret["data"][ref["key"]]).decode()
    if "USHER_CLUSTER__PEER_ADDR" in env:
        env["USHER_CLUSTER__NODE_ID"] = "2"
        env["USHER_CLUSTER__ADVERTISE"] = f"{RELEASE}-usher-1.{PEERS}:5270"
    with tempfile.TemporaryDirectory() as tmp:
        toml = pathlib.Path(tmp) / "usher.toml"
        toml.write_text(config_map["data"]["usher.toml"])
        # The chart's paths do not exist here; the check only loads settings.
        out = subprocess.run([usher_binary(), "check-config", "--config", str(toml)],
                             env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "configuration valid" in out.stdout
    if "-f" in values:
        assert "cluster node 2 of example.org, accounts CQL at scylla-client.scylla.svc:9042" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--set", "replicaCount=3"], "replicaCount > 1 needs cluster.enabled=true"),
    (["--set", "cluster.enabled=true", "--set", "replicaCount=3"], "cluster.enabled needs scylla.nodes"),
    (["-f", str(PRODUCTION), "--set", "replicaCount=2"], "replicaCount must be at least cluster.replication"),
])
def test_settings_that_cannot_work_fail_at_render_time(args, message):
    out = helm("template", RELEASE, str(CHART), *args, check=False)
    assert out.returncode != 0
    assert message in out.stderr
