"""XMPP client steps shared by the real-client tests, on slixmpp."""

import asyncio

import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from conftest import DOMAIN

PASSWORD = "correct horse battery"
TIMEOUT = 20


class Outcome:
    def __init__(self):
        self.done = asyncio.get_running_loop().create_future()

    def set(self, value):
        if not self.done.done():
            self.done.set_result(value)


def make_client(node, user, password, **kwargs):
    client = slixmpp.ClientXMPP(f"{user}@{DOMAIN}", password, **kwargs)
    # Verify the node's generated certificate instead of switching checks off.
    client.ca_certs = node.cert
    return client


async def preauth(client, token):
    """XEP-0445 preauth IQ. slixmpp has no plugin for it and holds back IQs
    before the session starts, so write it raw and catch the answer by id."""
    iq_id = "preauth-" + token[:6]
    answer = asyncio.get_running_loop().create_future()

    def on_answer(iq):
        if not answer.done():
            answer.set_result(iq)

    client.register_handler(Callback("preauth answer", StanzaPath(f"iq@id={iq_id}"), on_answer))
    client.send_raw(
        f"<iq type='set' id='{iq_id}'><preauth xmlns='urn:xmpp:pars:0' token='{token}'/></iq>"
    )
    try:
        return await asyncio.wait_for(answer, TIMEOUT)
    finally:
        client.remove_handler("preauth answer")


async def run_until(client, node, outcome):
    """Connects `client` to `node` and waits (at most TIMEOUT) for `outcome`."""
    client.connect(node.host, node.port)
    try:
        return await asyncio.wait_for(outcome.done, TIMEOUT)
    finally:
        client.disconnect()
        await asyncio.sleep(0.1)


async def register_and_login(node, user, password, token=None):
    """Registers through XEP-0077 on the secured stream (proving `token` first,
    as XEP-0445 clients do), then logs in on it."""
    client = make_client(node, user, password)
    client.register_plugin("xep_0077")
    client.plugin["xep_0077"].force_registration = True
    outcome = Outcome()

    async def on_register(_form):
        if token is not None:
            reply = await preauth(client, token)
            if reply["type"] != "result":
                outcome.set(("preauth-error", reply["error"]["condition"], reply["error"]["text"]))
                client.disconnect()
                return
        iq = client.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = client.boundjid.user
        iq["register"]["password"] = client.password
        try:
            await iq.send(timeout=TIMEOUT)
        except IqError as e:
            outcome.set(("register-error", e.iq["error"]["condition"], e.iq["error"]["text"]))
            client.disconnect()

    client.add_event_handler("register", on_register)
    client.add_event_handler("session_start", lambda _: outcome.set(("session", str(client.boundjid))))
    client.add_event_handler("failed_auth", lambda _: outcome.set(("failed_auth", None)))
    return await run_until(client, node, outcome)


async def login(node, user, password, mech):
    client = make_client(node, user, password, sasl_mech=mech)
    outcome = Outcome()

    def on_session(_):
        used = client.plugin["feature_mechanisms"].mech.name
        outcome.set(("session", str(client.boundjid), used))

    client.add_event_handler("session_start", on_session)
    client.add_event_handler("failed_auth", lambda _: outcome.set(("failed_auth", None, None)))
    return await run_until(client, node, outcome)


async def roster_of(node, user, password):
    """Logs in and returns the roster: {bare JID: subscription}."""
    client = make_client(node, user, password)
    outcome = Outcome()

    async def on_session(_):
        await client.get_roster()
        roster = client.client_roster
        outcome.set({jid: roster[jid]["subscription"] for jid in roster if jid != client.boundjid.bare})

    client.add_event_handler("session_start", on_session)
    client.add_event_handler("failed_auth", lambda _: outcome.set(None))
    return await run_until(client, node, outcome)
