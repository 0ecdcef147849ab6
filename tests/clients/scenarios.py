"""Chat between contacts (RFC 6120 §10, RFC 6121 §2.6 and §4-§8, XEP-0160), as
scenarios any site runs: alice gets an account, bob registers with her contact
invite, then they see each other, talk, ping. `pair.alice` and `pair.bob` are
the client libraries they use (talk.Slixmpp, talk.Smack)."""

from conftest import DOMAIN
from sites import unique

# How long a contact's vanishing may take to show as unavailable: a dropped
# TCP connection at once; a killed cluster node once its peers notice.
VANISH_BOUND = 10

# A roster item of alice's that is nobody on this server.
CAROL = "carol@example.org"


async def contacts(site, pair):
    """alice, and bob registered with her contact invite: each in the other's roster."""
    alice = await site.new_account(pair.alice, unique("alice"), where=1)
    bob = await site.new_contact(alice, pair.bob, unique("bob"), where=site.far)
    return alice, bob


async def both_online(site, alice, bob):
    """alice logs in, then bob; each sees the other available (broadcast, probe)."""
    a = await alice.login(site)
    b = await bob.login(site)
    await a.expect("presence", sender=b.jid, type="available")
    await b.expect("presence", sender=a.jid, type="available")
    return a, b


async def come_and_go(site, pair):
    alice, bob = await contacts(site, pair)
    a, b = await both_online(site, alice, bob)
    await b.close()
    await a.expect("presence", sender=b.jid, type="unavailable")


async def vanish(site, pair):
    alice, bob = await contacts(site, pair)
    a, b = await both_online(site, alice, bob)
    await site.vanish(b, bob.where)
    await a.expect("presence", sender=b.jid, type="unavailable", timeout=VANISH_BOUND)


async def chat_both_ways(site, pair):
    # Not waiting for presence: a message to a bare JID reaches bob whether
    # his initial presence is processed first (delivered) or not (kept, then
    # delivered with it), so this tests messages alone.
    alice, bob = await contacts(site, pair)
    a = await alice.login(site)
    b = await bob.login(site)
    await a.send_message(bob.jid, "hello bob")  # to the bare JID: his online resource
    got = await b.expect("message", sender=a.jid, body="hello bob")
    assert got["type"] == "chat"
    await b.send_message(got["from"], "hello alice")  # to the full JID it came from
    back = await a.expect("message", sender=b.jid, body="hello alice")
    assert back["type"] == "chat"


async def offline_message_once(site, pair):
    alice, bob = await contacts(site, pair)
    a = await alice.login(site)
    await a.send_message(bob.jid, "while you were out")
    await a.ping(DOMAIN)  # a server handles a stream's stanzas in order: it is stored now
    # Each time bob has logged in alice sends a marker; what reaches bob before
    # it is what the server kept for him (RFC 6120 §10.1: in order; a marker
    # that beats bob's initial presence is kept too, after the rest).
    for login, kept in ((1, ["while you were out"]), (2, [])):
        b = await bob.login(site)
        await a.send_message(bob.jid, f"marker {login}")
        marker = await b.expect("message", sender=a.jid, body=f"marker {login}")
        await b.ping(DOMAIN)  # anything the server still had for bob came before this
        got = b.unread("message")
        assert [m["body"] for m in got] == kept, f"login {login}: {got}"
        for m in got:
            assert m["n"] < marker["n"], f"kept messages come first: {m}"
            assert m["from"].split("/")[0] == alice.jid and m["type"] == "chat", m
            assert m["delayed"], f"a kept message carries its time (XEP-0203): {m}"
        await b.close()
    assert a.unread("message") == [], "alice's messages were not bounced"


async def ping_full_jid(site, pair):
    alice, bob = await contacts(site, pair)
    a = await alice.login(site)
    b = await bob.login(site)  # an IQ to a full JID needs no presence (RFC 6120 §10.5.4)
    pong = await a.ping(b.jid)
    assert pong["from"] == b.jid
    await b.expect("ping", sender=a.jid)  # bob's client got it and answered


async def disco_own_account(site, lib):
    alice = await site.new_account(lib, unique("alice"))
    a = await alice.login(site)
    info = await a.disco_info(alice.jid)
    assert {"category": "account", "type": "registered"} in info["identities"], info


async def first_roster(site, alice, bob):
    """alice's first login from her phone: an empty cache asks with ver=''."""
    a = await alice.login(site, profile="phone")
    asked = await a.expect("roster_get")
    assert asked["ver"] == "", f"the client asks with an empty ver only if the server offers versioning: {asked}"
    first = await a.expect("roster_result")
    assert first["query"] and first["ver"], first
    assert first["items"] == {bob.jid: "both"}
    await a.close()
    return first["ver"]


async def roster_version_current(site, lib):
    alice, bob = await contacts(site, pair_of(lib))
    ver = await first_roster(site, alice, bob)
    a = await alice.login(site, profile="phone")
    asked = await a.expect("roster_get")
    assert asked["ver"] == ver
    result = await a.expect("roster_result")
    assert result == {"kind": "roster_result", "query": False, "n": result["n"]}, "empty: nothing changed"
    await a.ping(DOMAIN)  # pushes, were there any, come before this answer
    assert a.unread("roster_push") == []
    assert await a.roster() == {"items": {bob.jid: "both"}, "ver": ver}


async def roster_version_out_of_date(site, lib):
    alice, bob = await contacts(site, pair_of(lib))
    ver = await first_roster(site, alice, bob)
    laptop = await alice.login(site)  # another device of alice's, without a cache
    await laptop.roster_add(CAROL, "Carol")
    await laptop.close()
    a = await alice.login(site, profile="phone")
    asked = await a.expect("roster_get")
    assert asked["ver"] == ver
    result = await a.expect("roster_result")
    # RFC 6121 §2.6.3 allows either: the whole roster with its new version, or
    # an empty result and then a push for each change since `ver`.
    if result["query"]:
        assert result["items"] == {bob.jid: "both", CAROL: "none"}, result
        latest = result["ver"]
    else:
        push = await a.expect("roster_push", where=lambda e: CAROL in e["items"])
        assert push["items"] == {CAROL: "none"}, push
        latest = push["ver"]
    assert latest and latest != ver
    await a.ping(DOMAIN)
    assert await a.roster() == {"items": {bob.jid: "both", CAROL: "none"}, "ver": latest}


class Pair:
    def __init__(self, alice, bob):
        self.alice, self.bob = alice, bob

    def __repr__(self):
        return f"{self.alice.name}-{self.bob.name}"


def pair_of(lib):
    return Pair(lib, lib)
