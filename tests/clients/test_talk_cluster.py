"""The talk scenarios across a usher cluster: alice on node 1, bob on node 3 of
three (cluster/local-cluster, accounts in the CQL database named by
TEST_CQL_NODE; scripts/test-all runs these while its database is up). Each
library plays each side; killing bob's node must show him unavailable."""

import os

import pytest

import scenarios
from sites import ClusterSite, outside_site, usher_todo
from talk import run

pytestmark = [
    pytest.mark.cql,
    pytest.mark.skipif(not os.environ.get("TEST_CQL_NODE"),
                       reason="needs a CQL database (TEST_CQL_NODE); scripts/test-all runs it"),
    pytest.mark.skipif(outside_site() is not None, reason="TALK_SERVER is set: a cluster is usher's"),
]

PAIRS = ["slixmpp-smack", "smack-slixmpp"]

NO_PRESENCE = "usher broadcasts no presence, on one node or across nodes"
BOUNCED = "usher bounces a chat message to a local contact with service-unavailable"


@pytest.fixture(scope="module")
def cluster():
    site = ClusterSite(os.environ["TEST_CQL_NODE"])
    yield site
    site.stop()


@pytest.fixture
def site(cluster):
    yield cluster
    cluster.revive()


@usher_todo(NO_PRESENCE)
@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_contacts_on_two_nodes_see_each_other_come_and_go(site, pair):
    run(scenarios.come_and_go, site, pair)


@usher_todo(NO_PRESENCE)
@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_killing_a_contacts_node_shows_him_unavailable(site, pair):
    run(scenarios.vanish, site, pair)


@usher_todo(BOUNCED + ", across nodes too")
@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_chat_both_ways_across_nodes(site, pair):
    run(scenarios.chat_both_ways, site, pair)


@usher_todo(BOUNCED + " instead of keeping it while bob is offline")
@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_message_to_an_offline_contact_arrives_once_at_login_on_another_node(site, pair):
    run(scenarios.offline_message_once, site, pair)


@usher_todo("usher answers an IQ to a contact's full JID itself with service-unavailable")
@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_ping_to_a_full_jid_on_another_node_is_answered_by_that_client(site, pair):
    run(scenarios.ping_full_jid, site, pair)
