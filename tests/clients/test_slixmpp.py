"""A real XMPP client library (slixmpp) against usher: STARTTLS with certificate
verification, in-band registration, and login with each SASL mechanism."""

import asyncio

import pytest

from conftest import DOMAIN
from xmpp import PASSWORD, login, register_and_login

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
