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
