"""Two chat client libraries behind one small interface, for the talk tests:
slixmpp in this process, and Smack in a JVM (smack/Runner.java) driven over JSON
lines. A Session records what its client received as events, dicts with a "kind"
(presence, message, ping, roster_get, roster_result, roster_push), so a scenario
reads the same whichever library plays which part."""

import asyncio
import itertools
import json
import pathlib
import subprocess
import tempfile
import threading
from dataclasses import dataclass

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from conftest import DOMAIN, ROOT
from xmpp import TIMEOUT, Outcome, register_and_login

ROSTER_QUERY = "{jabber:iq:roster}query"


@dataclass
class Endpoint:
    """Where a client connects, and the certificate (or CA) it pins."""

    host: str
    port: int
    cert: pathlib.Path


class StanzaError(Exception):
    def __init__(self, condition, text=None):
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition


_live = []  # every session of the running test, for failure messages
_arrivals = itertools.count()


class Session:
    """One logged-in client and what it has received so far."""

    def __init__(self):
        self.jid = None  # full JID once bound
        self.gone = False  # closed or dropped
        self.events = []
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        _live.append(self)

    def record(self, event):
        event["n"] = next(_arrivals)  # the order of arrival, across sessions
        self.events.append(event)
        self._arrived.set()

    async def expect(self, kind, sender=None, timeout=TIMEOUT, where=lambda e: True, **fields):
        """Waits for an event of `kind` from `sender` with these field values
        (and `where`), removes it from the unread events and returns it."""
        if sender is not None:
            fields["from"] = sender
        deadline = self._loop.time() + timeout
        while True:
            for event in self.events:
                if event["kind"] == kind and where(event) and all(
                    event.get(k) == v for k, v in fields.items()
                ):
                    self.events.remove(event)
                    return event
            self._arrived.clear()
            left = deadline - self._loop.time()
            if left <= 0:
                raise AssertionError(
                    f"{self.jid} received no {kind} {fields} within {timeout}s.\n"
                    + "\n".join(f"{s.jid} received: {s.events}" for s in _live if s.jid)
                )
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                pass

    def unread(self, kind):
        return [e for e in self.events if e["kind"] == kind]


def run(scenario, *args):
    """Runs a scenario in a fresh event loop; afterwards no client of it stays
    connected (Smack's live on in the JVM otherwise)."""

    async def main():
        try:
            await scenario(*args)
        finally:
            for session in _live:
                if not session.gone:
                    try:
                        await session.drop()
                    except Exception:
                        pass
            _live.clear()
            await asyncio.sleep(0.1)  # let slixmpp finish with its sockets

    asyncio.run(main())


# --- slixmpp ---------------------------------------------------------------


class RosterCache:
    """slixmpp's roster backend interface, in memory: the roster an app keeps
    between logins, so that slixmpp asks with `ver` (RFC 6121 §2.6)."""

    def __init__(self):
        self.items = {}
        self.ver = ""

    def entries(self, owner, db_state=None):
        return list(self.items)

    def load(self, owner, jid, db_state):
        return self.items.get(jid)

    def save(self, owner, jid, item_state, db_state):
        if item_state.get("removed"):
            self.items.pop(jid, None)
        else:
            self.items[jid] = dict(item_state)

    def version(self, owner):
        return self.ver

    def set_version(self, owner, ver):
        self.ver = ver


def _subscription(state):
    both = state.get("to") and state.get("from")
    return "both" if both else "to" if state.get("to") else "from" if state.get("from") else "none"


def _roster_event(kind, iq):
    query = iq.xml.find(ROSTER_QUERY)
    if query is None:
        return {"kind": kind, "query": False}
    items = {i.get("jid"): i.get("subscription", "none") for i in query.findall("{jabber:iq:roster}item")}
    return {"kind": kind, "query": True, "ver": query.get("ver"), "items": items}


class SlixSession(Session):
    def __init__(self, client, cache):
        super().__init__()
        self.client = client
        self.cache = cache
        self._roster_gets = set()

        def presence(p):
            kind = "unavailable" if p["type"] == "unavailable" else (
                "available" if p["type"] in ("available", "away", "chat", "dnd", "xa") else p["type"])
            self.record({"kind": "presence", "from": str(p["from"]), "type": kind})

        def message(m):
            event = {"kind": "message", "from": str(m["from"]), "type": m["type"],
                     "body": m["body"] or None,
                     "delayed": m.xml.find("{urn:xmpp:delay}delay") is not None}
            if m["type"] == "error":
                event["condition"] = m["error"]["condition"]
            self.record(event)

        client.register_handler(Callback("talk presence", StanzaPath("presence"), presence))
        client.register_handler(Callback("talk message", StanzaPath("message"), message))
        client.register_handler(Callback(
            "talk ping", StanzaPath("iq@type=get/ping"),
            lambda iq: self.record({"kind": "ping", "from": str(iq["from"])})))
        client.register_handler(Callback(
            "talk roster push", StanzaPath("iq@type=set/roster"),
            lambda iq: self.record(_roster_event("roster_push", iq))))
        # Filters see the stanzas as they cross the wire, before slixmpp's own
        # handlers: what it asks at login, and whether the answer had a query.
        client.add_filter("out", self._outgoing)
        client.add_filter("in", self._incoming)

    def _outgoing(self, stanza):
        if isinstance(stanza, slixmpp.Iq) and stanza["type"] == "get":
            query = stanza.xml.find(ROSTER_QUERY)
            if query is not None:
                self._roster_gets.add(stanza["id"])
                self.record({"kind": "roster_get", "ver": query.get("ver")})
        return stanza

    def _incoming(self, stanza):
        if isinstance(stanza, slixmpp.Iq) and stanza["type"] == "result" and stanza["id"] in self._roster_gets:
            self._roster_gets.discard(stanza["id"])
            self.record(_roster_event("roster_result", stanza))
        return stanza

    async def send_message(self, to, body):
        self.client.send_message(mto=to, mbody=body, mtype="chat")

    async def ping(self, to):
        iq = self.client.Iq(sto=to, stype="get")
        iq.enable("ping")
        try:
            reply = await iq.send(timeout=TIMEOUT)
        except IqError as e:
            raise StanzaError(e.iq["error"]["condition"], e.iq["error"]["text"]) from None
        except IqTimeout:
            raise StanzaError("timeout") from None
        return {"from": str(reply["from"])}

    async def disco_info(self, to):
        try:
            reply = await self.client.plugin["xep_0030"].get_info(jid=to, local=False, cached=False, timeout=TIMEOUT)
        except IqError as e:
            raise StanzaError(e.iq["error"]["condition"], e.iq["error"]["text"]) from None
        info = reply["disco_info"]
        return {"identities": [{"category": c, "type": t} for c, t, _, _ in info["identities"]],
                "features": list(info["features"])}

    async def roster(self):
        """The roster as the app keeps it: its cache, with the version."""
        me = self.client.boundjid.bare  # slixmpp keeps an item for its own presence
        if self.cache is None:
            roster = self.client.client_roster
            return {"items": {j: roster[j]["subscription"] for j in roster if j != me}, "ver": None}
        items = {j: _subscription(s) for j, s in self.cache.items.items() if j != me}
        return {"items": items, "ver": self.cache.ver}

    async def roster_add(self, jid, name):
        iq = self.client.Iq(stype="set")
        iq["roster"]["items"] = {jid: {"name": name, "subscription": "none", "groups": []}}
        await iq.send(timeout=TIMEOUT)

    async def close(self):
        self.gone = True
        await self.client.disconnect()

    async def drop(self):
        self.gone = True
        self.client.abort()


class Slixmpp:
    name = "slixmpp"

    def __init__(self):
        self._caches = {}

    async def register(self, endpoint, user, password, token=None):
        result = await register_and_login(endpoint, user, password, token)
        if result[0] != "session":
            raise StanzaError(result[1], result[2] if len(result) > 2 else None)

    async def login(self, endpoint, user, password, profile=None):
        """Logs in as an app does: roster first (from its cache with `ver` when
        it has a profile), then initial presence."""
        client = slixmpp.ClientXMPP(f"{user}@{DOMAIN}", password)
        client.ca_certs = endpoint.cert  # verify the server's certificate
        for plugin in ("xep_0030", "xep_0199", "xep_0203"):
            client.register_plugin(plugin)
        cache = self._caches.setdefault(profile, RosterCache()) if profile else None
        if cache:
            client.roster.set_backend(cache)
        session = SlixSession(client, cache)
        ready = Outcome()

        async def on_session(_):
            try:
                await client.get_roster(timeout=TIMEOUT)
            except (IqError, IqTimeout) as e:
                ready.set(e)
                return
            client.send_presence()
            ready.set(None)

        client.add_event_handler("session_start", on_session)
        client.add_event_handler("failed_auth", lambda _: ready.set(StanzaError("not-authorized")))
        client.connect(endpoint.host, endpoint.port)
        failure = await asyncio.wait_for(ready.done, TIMEOUT)
        if failure:
            raise failure
        session.jid = str(client.boundjid)
        return session


# --- Smack -----------------------------------------------------------------


class SmackRunner:
    """The JVM hosting every Smack client of a test session. Commands and
    answers are JSON lines; events of each client are routed to its Session."""

    def __init__(self, classpath, log_path):
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            ["java", "-Xss512k", "-XX:TieredStopAtLevel=1", "-cp", classpath, "dev.usher.talk.Runner"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
        )
        self.log_path = log_path
        self._ids = itertools.count(1)
        self._waiting = {}
        self.sessions = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # not the runner's (it keeps stdout to itself; just in case)
            if "id" in line:
                loop, answer = self._waiting.pop(line["id"])
                self._hand_over(loop, lambda a=answer, l=line: a.done() or a.set_result(l))
            else:
                session = self.sessions.get(line.pop("client"))
                if session is not None:
                    self._hand_over(session._loop, lambda s=session, l=line: s.record(l))

    @staticmethod
    def _hand_over(loop, callback):
        # A test's loop is closed once it ends; what still arrives for it is dropped.
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:
            pass

    async def call(self, client, op, **args):
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        with self._lock:
            n = next(self._ids)
            self._waiting[n] = (loop, answer)
            self.proc.stdin.write((json.dumps({"id": n, "client": client, "op": op, **args}) + "\n").encode())
            self.proc.stdin.flush()
        try:
            reply = await asyncio.wait_for(answer, TIMEOUT + 10)
        except asyncio.TimeoutError:
            raise AssertionError(f"Smack runner gave no answer to {op}; its log: {self.log_path}") from None
        if "error" in reply:
            if reply["error"] == "stanza-error":
                raise StanzaError(reply["condition"], reply.get("text"))
            raise StanzaError(reply["error"], reply.get("text"))
        return reply["ok"]

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def smack_classpath():
    """Builds (once, into the cache) and returns the Smack runner's classpath."""
    out = subprocess.run([str(ROOT / "tests/clients/smack/build")], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"tests/clients/smack/build failed:\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1]


class SmackSession(Session):
    def __init__(self, runner, name):
        super().__init__()
        self.runner = runner
        self.name = name
        runner.sessions[name] = self

    async def _call(self, op, **args):
        return await self.runner.call(self.name, op, **args)

    async def send_message(self, to, body):
        await self._call("send_message", to=to, body=body)

    async def ping(self, to):
        return await self._call("ping", to=to)

    async def disco_info(self, to):
        return await self._call("disco_info", to=to)

    async def roster(self):
        return await self._call("roster")

    async def roster_add(self, jid, name):
        await self._call("roster_add", jid=jid, name=name)

    async def close(self):
        self.gone = True
        await self._call("close")

    async def drop(self):
        self.gone = True
        await self._call("drop")


class Smack:
    name = "smack"
    _names = itertools.count(1)

    def __init__(self, runner, profiles_dir):
        self.runner = runner
        self.profiles = pathlib.Path(profiles_dir)

    async def _open(self, endpoint, profile=None):
        session = SmackSession(self.runner, f"smack{next(self._names)}")
        args = {"host": endpoint.host, "port": endpoint.port, "ca": str(endpoint.cert), "domain": DOMAIN}
        if profile:
            args["profile"] = str(self.profiles / profile)
        await session._call("open", **args)
        return session

    async def register(self, endpoint, user, password, token=None):
        session = await self._open(endpoint)
        try:
            if token is not None:
                await session._call("preauth", token=token)
            await session._call("register", user=user, password=password)
        finally:
            await session.drop()

    async def login(self, endpoint, user, password, profile=None):
        session = await self._open(endpoint, profile)
        try:
            answer = await session._call("login", user=user, password=password)
        except StanzaError:
            await session.drop()
            raise
        session.jid = answer["jid"]
        return session


def smack_runner_for_session():
    """Starts the Smack JVM (building the runner first if needed)."""
    log = pathlib.Path(tempfile.mkdtemp(prefix="smack-talk-")) / "runner.log"
    return SmackRunner(smack_classpath(), log)

