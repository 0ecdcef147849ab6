"""Renders BENCHMARKS.md from compare-prosody's results (JSON lines)."""
import json
import os
import platform
import sys

results_path, floor_path, quick, prosody_version, rev = sys.argv[1:6]
rows = [json.loads(l) for l in open(results_path) if l.strip()]
floor = json.load(open(floor_path))


def get(server, label):
    return next((r for r in rows if r["server"] == server and r["label"] == label), None)


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def mem_gib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            return int(line.split()[1]) / 1024 / 1024
    return 0


out = []
w = out.append
w("# Benchmarks: usher vs Prosody\n")
if quick == "1":
    w("**Quick run (`--quick`): counts too small for the numbers to mean much.**\n")
w("Written by `load-tests/compare-prosody` from one run on one machine; both servers and")
w("the client (`usher-load`) share it, over loopback.\n")
w(f"- Machine: {os.cpu_count()} cores ({cpu_model()}), {mem_gib():.0f} GiB RAM, {platform.platform()}")
w(f"- usher {rev} (release build); Prosody {prosody_version} with mod_invites, mod_invites_register")
w("- Same work per registration on both: TCP, STARTTLS, XEP-0445 preauth, XEP-0077 get+set;")
w("  SCRAM-SHA-1 keys only, 10000 PBKDF2 iterations (usher `scram_hashes=sha-1`); 500 invites")
w("  pending besides the ones being used; no registration rate limits; logins are SCRAM-SHA-1 + bind.")
w("- Server CPU: user+system time of the server process over the run, from /proc.\n")

w("## Registrations\n")
w("| concurrency | usher /s | Prosody /s | ratio | usher p99 ms | Prosody p99 ms | usher CPU ms/reg | Prosody CPU ms/reg |")
w("| --- | --- | --- | --- | --- | --- | --- | --- |")
for c in (1, 10, 50):
    u, p = get("usher", f"register c={c}"), get("prosody", f"register c={c}")
    if not u or not p:
        continue
    ucpu = u["server_cpu_ms"] / max(u["ok"], 1)
    pcpu = p["server_cpu_ms"] / max(p["ok"], 1)
    w(f"| {c} | {u['per_second']:.0f} | {p['per_second']:.1f} | {u['per_second'] / max(p['per_second'], 1e-9):.1f}x "
      f"| {u['latency_ms']['p99']:.1f} | {p['latency_ms']['p99']:.1f} | {ucpu:.2f} | {pcpu:.2f} |")
w("")

w("## Logins\n")
w("| concurrency | usher /s | Prosody /s | ratio | usher p99 ms | Prosody p99 ms |")
w("| --- | --- | --- | --- | --- | --- |")
for c in (1, 10, 50):
    u, p = get("usher", f"login c={c}"), get("prosody", f"login c={c}")
    if not u or not p:
        continue
    w(f"| {c} | {u['per_second']:.0f} | {p['per_second']:.0f} | {u['per_second'] / max(p['per_second'], 1e-9):.1f}x "
      f"| {u['latency_ms']['p99']:.1f} | {p['latency_ms']['p99']:.1f} |")
w("")

w("## Idle authenticated connections\n")
w("| server | connections | RSS before | RSS after | per connection |")
w("| --- | --- | --- | --- | --- |")
for server in ("usher", "prosody"):
    r = get(server, "idle")
    if r:
        w(f"| {server} | {r['connections']} | {r['rss_before_kib']} KiB | {r['rss_after_kib']} KiB | {r['kib_per_connection']:.1f} KiB |")
w("")

w("## Chat between logged-in users\n")
w("`usher-load chat`: N pairs of logged-in, available users; a sends a chat message to b's bare")
w("JID, b answers to the full JID it came from, a reads the answer. One exchange = two messages")
w("routed by the server; latency is one exchange (both messages), p99 over the run. usher runs")
w("with `limits.stanzas_per_second` raised out of the way (one load client sends far more than")
w("a person). The cluster is 3 usher nodes on 127.0.0.1-3 with one Apache Cassandra (512 MiB")
w("heap), every pair split across two nodes so every message crosses nodes; all of it, client")
w("included, shares the same 2 cores. Server CPU is summed over the server processes (the")
w("database not included).\n")
w("| pairs | server | messages/s | exchange p50 ms | exchange p99 ms | server CPU µs/message | failed |")
w("| --- | --- | --- | --- | --- | --- | --- |")
for pairs in (1, 10, 50):
    for server, name in (("prosody", "Prosody"), ("usher", "usher, one node"), ("usher-cluster", "usher, 3 nodes, across nodes")):
        r = get(server, f"chat pairs={pairs}")
        if not r:
            continue
        msgs = 2 * r["ok"]
        cpu_us = 1000 * r["server_cpu_ms"] / max(msgs, 1)
        w(f"| {pairs} | {name} | {2 * r['per_second']:.0f} | {r['latency_ms']['p50']:.2f} | "
          f"{r['latency_ms']['p99']:.2f} | {cpu_us:.0f} | {r.get('failed', 0)} |")
w("")

w("## The CPU ceiling\n")
w(f"`usher-load floor` on the same machine: one PBKDF2-HMAC-SHA1 run of {floor['iterations']} iterations takes "
  f"{floor['pbkdf2_ms']:.2f} ms of one core, one TLS handshake with usher's certificate and settings "
  f"{floor['tls_handshake_ms']:.2f} ms (client and server together, so the server's share is less). "
  f"A registration cannot cost less than {floor['floor_ms_per_registration']:.2f} ms of CPU: at best "
  f"{floor['ceiling_registrations_per_second']:.0f} registrations/s on {floor['cores']} cores — with the "
  "client on the same cores, which it is here.\n")
u = get("usher", "register c=50")
if u:
    ucpu = u["server_cpu_ms"] / max(u["ok"], 1)
    w(f"At concurrency 50 usher did {u['per_second']:.0f}/s = {100 * u['per_second'] / floor['ceiling_registrations_per_second']:.0f} % "
      f"of that ceiling, spending {ucpu:.2f} ms of server CPU per registration = "
      f"{ucpu / floor['floor_ms_per_registration']:.2f}x the floor.\n")
print("\n".join(out))
