"""Chat between contacts with two real client libraries, slixmpp and Smack,
mixed: the scenarios of scenarios.py against one usher node, or, with
TALK_SERVER set (see sites.OutsideSite), against another server to prove the
tests themselves. With TEST_CQL_NODE, the roster tests also run on a CQL store."""

import os
import secrets

import pytest

import scenarios
from conftest import Node
from sites import UsherSite, outside_site, usher_todo
from talk import run

PAIRS = ["slixmpp-slixmpp", "smack-smack", "slixmpp-smack", "smack-slixmpp"]
LIBS = ["slixmpp", "smack"]
STORES = ["embedded", pytest.param("cql", marks=pytest.mark.cql)]

NO_PRESENCE = ("usher broadcasts no presence: each client gets only its roster, "
               "no initial presence of the other (no broadcast, no probe answer)")
NO_VERSIONING = ("usher offers no roster versioning (no urn:xmpp:features:rosterver stream "
                 "feature): clients ask without ver and the roster comes without one")
BOUNCED = "usher bounces a chat message to a local contact with service-unavailable"


@pytest.fixture
def site(request):
    store = getattr(request, "param", "embedded")
    outside = outside_site()
    if outside:
        if store != "embedded":
            pytest.skip("the store is usher's business")
        yield outside
        return
    env = {"USHER_REGISTRATION_INVITE_ONLY": "true"}
    if store == "cql":
        cql = os.environ.get("TEST_CQL_NODE")
        if not cql:
            pytest.skip("needs a CQL database (TEST_CQL_NODE); scripts/test-all runs it")
        env["USHER_SCYLLA__NODES"] = cql
        env["USHER_SCYLLA__KEYSPACE"] = f"usher_talk_{secrets.token_hex(4)}"
    node = Node(env)
    yield UsherSite(node)
    node.stop()


@usher_todo(NO_PRESENCE)
@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_contacts_see_each_other_come_and_go(site, pair):
    run(scenarios.come_and_go, site, pair)


@usher_todo(NO_PRESENCE)
@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_a_contact_whose_connection_drops_goes_unavailable(site, pair):
    run(scenarios.vanish, site, pair)


@usher_todo(BOUNCED + " (sent to the bare JID of an online contact)")
@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_chat_both_ways(site, pair):
    run(scenarios.chat_both_ways, site, pair)


@usher_todo(BOUNCED + " instead of keeping it while bob is offline, and the markers too")
@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_message_to_an_offline_contact_arrives_once_at_next_login(site, pair):
    run(scenarios.offline_message_once, site, pair)


@usher_todo("usher answers an IQ to a contact's full JID itself with service-unavailable "
            "instead of routing it to that client")
@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_ping_to_a_full_jid_is_answered_by_that_client(site, pair):
    run(scenarios.ping_full_jid, site, pair)


@usher_todo("disco#info to the own bare JID is answered as if to the server: "
            "identity server/im, no account/registered")
@pytest.mark.parametrize("lib", LIBS, indirect=True)
def test_disco_info_of_own_bare_jid_is_a_registered_account(site, lib):
    run(scenarios.disco_own_account, site, lib)


@usher_todo(NO_VERSIONING)
@pytest.mark.parametrize("site", STORES, indirect=True)
@pytest.mark.parametrize("lib", LIBS, indirect=True)
def test_roster_login_with_the_current_version_gets_an_empty_result(site, lib):
    run(scenarios.roster_version_current, site, lib)


@usher_todo(NO_VERSIONING)
@pytest.mark.parametrize("site", STORES, indirect=True)
@pytest.mark.parametrize("lib", LIBS, indirect=True)
def test_roster_login_with_an_old_version_catches_up(site, lib):
    run(scenarios.roster_version_out_of_date, site, lib)
