"""A real XMPP client library (slixmpp) against usher: STARTTLS with certificate
verification, in-band registration, and login with each SASL mechanism."""

import asyncio

import pytest
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
    client.connect("127.0.0.1", node.port)
    try:
        return await asyncio.wait_for(outcome.done, TIMEOUT)
    finally:
        client.disconnect()
        await asyncio.sleep(0.1)


async def login(node, user, password, mech):
    client = make_client(node, user, password, sasl_mech=mech)
    outcome = Outcome()

    def on_session(_):
        used = client.plugin["feature_mechanisms"].mech.name
        outcome.set(("session", str(client.boundjid), used))

    client.add_event_handler("session_start", on_session)
    client.add_event_handler("failed_auth", lambda _: outcome.set(("failed_auth", None, None)))
    client.connect("127.0.0.1", node.port)
    try:
        return await asyncio.wait_for(outcome.done, TIMEOUT)
    finally:
        client.disconnect()
        await asyncio.sleep(0.1)


def test_register_disconnect_and_log_in_with_each_mechanism(node):
    async def scenario():
        kind, jid = await register_and_login(node, "slixuser", PASSWORD)
        assert kind == "session", (kind, jid, node.log())
        assert jid.startswith("slixuser@localhost/")
        for mech in ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"]:
            kind, jid, used = await login(node, "slixuser", PASSWORD, mech)
            assert kind == "session", (mech, node.log())
            assert used == mech
            user_part, resource = jid.split("/", 1)
            assert user_part == "slixuser@localhost"
            assert resource

    asyncio.run(scenario())


def test_wrong_password_fails_login(node):
    async def scenario():
        kind, _ = await register_and_login(node, "slixwrong", PASSWORD)
        assert kind == "session"
        for mech in ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"]:
            kind, _, _ = await login(node, "slixwrong", "a wrong password", mech)
            assert kind == "failed_auth", mech

    asyncio.run(scenario())


def test_taken_username_is_a_conflict(node):
    async def scenario():
        kind, _ = await register_and_login(node, "slixtaken", PASSWORD)
        assert kind == "session"
        result = await register_and_login(node, "slixtaken", "another password")
        assert result == ("register-error", "conflict", "The requested username already exists.")

    asyncio.run(scenario())


def test_register_with_an_invite_as_xep0445_clients_do(invite_node):
    async def scenario():
        token = invite_node.invite()
        kind, jid = await register_and_login(invite_node, "invited", PASSWORD, token)
        assert kind == "session", (kind, jid, invite_node.log())
        assert jid.startswith("invited@localhost/")
        # Spent: a second client with the same token is refused at preauth.
        again = await register_and_login(invite_node, "second", PASSWORD, token)
        assert again == ("preauth-error", "item-not-found", "The invite token is invalid or expired")
        # And without any invite, an invite-only node refuses registration.
        refused = await register_and_login(invite_node, "noinvite", PASSWORD)
        assert refused == (
            "register-error", "not-acceptable",
            "Registration on this server is through invitation only",
        )

    asyncio.run(scenario())
