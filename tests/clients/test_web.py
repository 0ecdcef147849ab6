"""The invite pages in a real browser (headless Debian Chromium through
playwright-core, tests/web/browser.mjs), then a real XMPP client (slixmpp) with the
account the browser made. Screenshots of every page go to
$USHER_ARTIFACTS/web (default: test-artifacts/web in the checkout)."""

import asyncio
import json
import os
import pathlib
import secrets
import subprocess

from conftest import DOMAIN, ROOT
from xmpp import PASSWORD, login, register_and_login, roster_of

WEB = ROOT / "tests" / "web"
ARTIFACTS = pathlib.Path(os.environ.get("USHER_ARTIFACTS", ROOT / "test-artifacts")) / "web"


def browse(test_name, steps):
    """Runs the steps in one browser context; returns what each step saw."""
    shots = ARTIFACTS / test_name
    out = subprocess.run(
        ["node", str(WEB / "browser.mjs"), str(shots), json.dumps(steps)],
        capture_output=True, text=True, timeout=120, cwd=WEB,
    )
    lines = out.stdout.strip().splitlines()
    assert lines, f"browser printed nothing:\n{out.stderr}"
    report = json.loads(lines[-1])
    assert report["failed"] is None, f"browser step failed:\n{report['failed']}\n{out.stderr}"
    return report["results"]


def register_steps(landing, username, password, shot_prefix):
    return [
        {"goto": landing},
        {"shot": f"{shot_prefix}-landing"},
        {"click": "#register"},
        {"text": "h1"},
        {"shot": f"{shot_prefix}-form"},
        {"fill": "#username", "value": username},
        {"fill": "#password", "value": password},
        {"fill": "#password_confirm", "value": password},
        {"click": "#submit"},
        {"text": "h1"},
        {"text": "#jid"},
        {"text": "#contact"},
        {"shot": f"{shot_prefix}-done"},
    ]


def test_landing_page_web_registration_then_a_client_logs_in(invite_node):
    landing, _uri = invite_node.invite_links()
    seen = browse("register", register_steps(landing, "webuser", PASSWORD, "register") + [
        {"goto": landing},
        {"text": "#message"},
        {"shot": "gone-used-up"},
    ])
    page, _, form, title, _, _, _, _, done, done_title, jid, contact, _, gone, gone_text, _ = seen
    assert page["status"] == 200
    assert form["status"] == 200 and form["url"].endswith("/register/" + landing.rsplit("/", 1)[1])
    assert title == "Create your account"
    assert done["status"] == 200 and done_title == "Your account is ready", done
    assert jid == f"webuser@{DOMAIN}"
    assert contact is None  # an account invite names no inviter
    # Single use: the link is spent now.
    assert gone["status"] == 410 and "already been used" in gone_text

    kind, bound, mech = asyncio.run(login(invite_node, "webuser", PASSWORD, "SCRAM-SHA-256"))
    assert (kind, mech) == ("session", "SCRAM-SHA-256"), (kind, bound, mech)
    assert bound.startswith(f"webuser@{DOMAIN}/")


def test_a_taken_username_is_an_error_on_the_form_and_the_invite_stays_usable(invite_node):
    first = invite_node.invite()
    assert asyncio.run(register_and_login(invite_node, "taken", PASSWORD, first))[0] == "session"
    landing, _ = invite_node.invite_links()
    register_url = landing.replace("/invite/", "/register/")
    seen = browse("taken", [
        {"goto": register_url},
        {"fill": "#username", "value": "taken"},
        {"fill": "#password", "value": PASSWORD},
        {"fill": "#password_confirm", "value": PASSWORD},
        {"click": "#submit"},
        {"text": "#error"},
        {"value": "#username"},
        {"shot": "taken-error"},
        # The two passwords differ: an error too, nothing registered.
        {"fill": "#username", "value": "another"},
        {"fill": "#password", "value": PASSWORD},
        {"fill": "#password_confirm", "value": PASSWORD + "!"},
        {"click": "#submit"},
        {"text": "#error"},
        {"value": "#username"},
        # Then a free name with the same invite works.
        {"fill": "#password", "value": PASSWORD},
        {"fill": "#password_confirm", "value": PASSWORD},
        {"click": "#submit"},
        {"text": "#jid"},
    ])
    taken = seen[4]
    assert taken["status"] == 409, taken
    assert "taken is already taken" in seen[5]
    assert seen[6] == "taken"  # the input is kept
    assert seen[11]["status"] == 422 and "passwords differ" in seen[12]
    assert seen[13] == "another"
    assert seen[17] == f"another@{DOMAIN}"
    kind, _, _ = asyncio.run(login(invite_node, "another", PASSWORD, "SCRAM-SHA-1"))
    assert kind == "session"
    kind, _, _ = asyncio.run(login(invite_node, "taken", PASSWORD, "PLAIN"))
    assert kind == "session"  # the taken account is untouched


def test_unknown_and_revoked_invites_get_clear_pages(invite_node):
    unknown = secrets.token_urlsafe(16)
    base = f"http://127.0.0.1:{invite_node.http_port}"
    landing, _ = invite_node.invite_links()
    token = landing.rsplit("/", 1)[1]
    revoke = invite_node.cli("invite", "revoke", token)
    assert revoke.returncode == 0, revoke.stderr
    seen = browse("not-found-and-gone", [
        {"goto": f"{base}/invite/{unknown}"},
        {"text": "h1"},
        {"shot": "not-found"},
        {"goto": f"{base}/register/{unknown}"},
        {"goto": landing},
        {"text": "#message"},
        {"shot": "gone-revoked"},
        {"goto": f"{base}/register/{token}"},
    ])
    assert seen[0]["status"] == 404 and seen[1] == "Invite not found"
    assert seen[3]["status"] == 404
    assert seen[4]["status"] == 410 and "withdrawn" in seen[5]
    assert seen[7]["status"] == 410


def test_a_contact_invite_registered_on_the_web_pairs_the_inviter(invite_node):
    first = invite_node.invite()
    assert asyncio.run(register_and_login(invite_node, "ann", PASSWORD, first))[0] == "session"
    landing, _ = invite_node.invite_links("--contact", "ann")
    seen = browse("contact", register_steps(landing, "bob", PASSWORD, "contact"))
    assert seen[8]["status"] == 200
    assert seen[11] == f"ann@{DOMAIN} is already in your contacts."
    assert asyncio.run(roster_of(invite_node, "bob", PASSWORD)) == {f"ann@{DOMAIN}": "both"}
    assert asyncio.run(roster_of(invite_node, "ann", PASSWORD)) == {f"bob@{DOMAIN}": "both"}


def test_a_reset_invite_sets_a_new_password_in_the_browser(invite_node):
    first = invite_node.invite()
    assert asyncio.run(register_and_login(invite_node, "carol", PASSWORD, first))[0] == "session"
    landing, _ = invite_node.invite_links("--reset", "carol")
    new_password = "a much newer secret"
    seen = browse("reset", [
        {"goto": landing},
        {"text": "#register"},
        {"click": "#register"},
        {"text": "#intro"},
        {"attr": "#username", "name": "name"},
        {"shot": "reset-form"},
        {"fill": "#password", "value": new_password},
        {"fill": "#password_confirm", "value": new_password},
        {"click": "#submit"},
        {"text": "h1"},
        {"shot": "reset-done"},
    ])
    assert seen[1] == "Set a new password in the browser"
    assert seen[3] == f"Choose a new password for carol@{DOMAIN}."
    assert seen[4] is None  # no username field: the invite names the account
    assert seen[8]["status"] == 200 and seen[9] == "Password changed"
    assert asyncio.run(login(invite_node, "carol", new_password, "SCRAM-SHA-256"))[0] == "session"
    assert asyncio.run(login(invite_node, "carol", PASSWORD, "SCRAM-SHA-256"))[0] == "failed_auth"
