//! Every text the web pages show, by id: one catalogue, English first. A
//! translation is another table with the same ids.

const EN: &[(&str, &str)] = &[
    ("title.invite", "You are invited"),
    (
        "invite.contact",
        "{inviter} invites you to chat on {domain}.",
    ),
    (
        "invite.account",
        "You are invited to create an account on {domain}.",
    ),
    ("invite.open", "Open the invite in your app"),
    (
        "invite.scan",
        "Or scan this code with the app on your phone:",
    ),
    (
        "invite.apps",
        "Don't have an app yet? These work well with invites:",
    ),
    ("invite.apps_other", "Apps for other platforms"),
    ("invite.expires", "This invite expires on {expires}."),
    ("title.not_found", "Invite not found"),
    (
        "not_found.body",
        "There is no such invite. Check that the whole link was copied.",
    ),
    ("title.gone", "Invite no longer valid"),
    (
        "gone.expired",
        "This invite has expired. Ask the person who sent it for a new one.",
    ),
    (
        "gone.revoked",
        "This invite was withdrawn. Ask the person who sent it for a new one.",
    ),
    (
        "gone.used_up",
        "This invite has already been used. Ask the person who sent it for a new one.",
    ),
    ("title.unavailable", "Please try again shortly"),
    (
        "invite.register_web",
        "No app yet, or it cannot use the invite? Create your account in the browser",
    ),
    ("invite.reset_web", "Set a new password in the browser"),
    ("title.register", "Create your account"),
    ("title.reset", "Set a new password"),
    ("reset.intro", "Choose a new password for {jid}."),
    ("register.username", "Username"),
    ("register.password", "Password"),
    ("register.confirm", "Password again"),
    (
        "register.password_hint",
        "At least {min} characters. You will need it to log in from your app.",
    ),
    ("register.submit", "Create account"),
    ("reset.submit", "Set password"),
    (
        "register.not_allowed",
        "This invite adds a contact but does not create an account. Open it in the app you already use.",
    ),
    (
        "register.disabled",
        "This server is not creating accounts or setting passwords at the moment.",
    ),
    ("title.registered", "Your account is ready"),
    (
        "registered.body",
        "Log in from any XMPP app with this address and the password you chose:",
    ),
    (
        "registered.contact",
        "{inviter} is already in your contacts.",
    ),
    ("registered.apps", "Apps for your device:"),
    ("title.reset_done", "Password changed"),
    (
        "reset.done",
        "The password of {jid} is changed. Log in from your app with the new one:",
    ),
    (
        "error.form_expired",
        "This form has expired or was sent from another site. Please submit it again.",
    ),
    ("error.password_mismatch", "The two passwords differ."),
    ("error.password_missing", "Please choose a password."),
    (
        "error.password_short",
        "The password is too short: use at least {min} characters.",
    ),
    (
        "error.password_chars",
        "The password contains characters that are not allowed.",
    ),
    (
        "error.username_invalid",
        "This username is not allowed. Use letters, digits and . _ -, without spaces.",
    ),
    (
        "error.username_taken",
        "The username {username} is already taken. Please choose another.",
    ),
    (
        "error.username_quarantined",
        "The username {username} belonged to a removed account and cannot be registered yet. Please choose another.",
    ),
    (
        "error.username_admin",
        "This username is reserved for an administrator. Please choose another.",
    ),
    ("error.wrong_username", "This invite is for another username."),
    (
        "error.invalid_invite",
        "This invite can no longer be used. Ask the person who sent it for a new one.",
    ),
    (
        "error.rate_limited",
        "Too many registrations from your address. Please try again later.",
    ),
    (
        "error.busy",
        "The server is busy with other registrations. Please try again in a moment.",
    ),
    (
        "error.unavailable",
        "The service is temporarily unavailable. Please try again in a moment.",
    ),
];

/// The text of `id` with `{name}` placeholders filled; the id itself if the
/// catalogue lacks it, so a missing text shows up rather than vanishing.
pub fn text(id: &str, args: &[(&str, &str)]) -> String {
    let template = EN.iter().find(|(k, _)| *k == id).map_or(id, |(_, v)| *v);
    let mut out = template.to_owned();
    for (name, value) in args {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_fill_their_placeholders() {
        assert_eq!(
            text(
                "invite.contact",
                &[("inviter", "ann"), ("domain", "example.org")]
            ),
            "ann invites you to chat on example.org."
        );
        assert_eq!(text("no.such.id", &[]), "no.such.id");
    }
}
