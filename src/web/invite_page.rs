//! `GET /invite/TOKEN`: the page an invite link opens. Who invites to which
//! domain, a button with the invite URI, a QR code of it, and clients for
//! the visitor's platform. Unknown tokens get 404, spent ones 410. Rendered
//! on the server, no JavaScript.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;

use super::messages::text;
use super::render::{message, page};
use super::{apps, HttpState};
use crate::clock::now_millis;
use crate::invites::model::InviteStatus;
use crate::invites::uri::invite_uri;
use crate::invites::{Invite, InviteKind, InviteSpec, Token};

/// The invite URI as an SVG QR code.
fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build(),
    )
}

/// The invite behind `raw`, if it can still be used; otherwise the page to
/// show instead (404 unknown, 410 spent, 503 while the ledger cannot answer).
pub(super) async fn active_invite(state: &HttpState, raw: &str) -> Result<Invite, Response> {
    let not_found = || {
        message(
            state,
            StatusCode::NOT_FOUND,
            "title.not_found",
            "not_found.body",
        )
    };
    let unavailable = || {
        message(
            state,
            StatusCode::SERVICE_UNAVAILABLE,
            "title.unavailable",
            "error.unavailable",
        )
    };
    let token = Token::parse(raw).ok_or_else(not_found)?;
    let ledger = state.readiness.ledger.get().ok_or_else(unavailable)?;
    let invite = match ledger.read(&token, |l| l.get(&token).cloned()).await {
        Ok(Some(invite)) => invite,
        Ok(None) => return Err(not_found()),
        Err(e) => {
            tracing::warn!(error = %e, "invite page: ledger unavailable");
            return Err(unavailable());
        }
    };
    let gone = match invite.status(now_millis()) {
        InviteStatus::Active => return Ok(invite),
        InviteStatus::Expired => "gone.expired",
        InviteStatus::Revoked => "gone.revoked",
        InviteStatus::UsedUp => "gone.used_up",
    };
    Err(message(state, StatusCode::GONE, "title.gone", gone))
}

/// Who invites whom to what, in one sentence.
pub(super) fn lead(spec: &InviteSpec, domain: &str) -> String {
    match (&spec.kind, &spec.inviter) {
        (InviteKind::Contact, Some(inviter)) => {
            let who = format!("{inviter}@{domain}");
            text("invite.contact", &[("inviter", &who), ("domain", domain)])
        }
        _ => text("invite.account", &[("domain", domain)]),
    }
}

pub async fn invite_page(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let invite = match active_invite(&state, &token).await {
        Ok(invite) => invite,
        Err(response) => return response,
    };
    let domain = state.config.domain.as_str();
    let uri = invite_uri(&invite.spec, domain);
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let platform = apps::platform(ua);
    let (mine, others): (Vec<_>, Vec<_>) = state
        .config
        .web_apps
        .iter()
        .cloned()
        .partition(|a| a.platforms.iter().any(|p| p == platform));
    let expires = std::time::UNIX_EPOCH + std::time::Duration::from_millis(invite.spec.expires_at);
    let expires = humantime::format_rfc3339_seconds(expires).to_string();
    let spec = &invite.spec;
    // The browser alternative, for invites that create or reset an account.
    let register = match spec.kind {
        _ if !spec.registers() || !state.config.allow_registration => None,
        InviteKind::Reset => Some(text("invite.reset_web", &[])),
        _ => Some(text("invite.register_web", &[])),
    };
    page(
        &state,
        StatusCode::OK,
        "invite.html",
        context! {
            title => text("title.invite", &[]),
            lead => lead(spec, domain),
            qr_svg => qr_svg(&uri).unwrap_or_default(),
            uri,
            open => text("invite.open", &[]),
            scan => text("invite.scan", &[]),
            apps_intro => text("invite.apps", &[]),
            apps_other => text("invite.apps_other", &[]),
            apps => mine,
            other_apps => others,
            register,
            register_url => format!("/register/{}", spec.token.as_str()),
            expires => text("invite.expires", &[("expires", &expires)]),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_templates_render_and_escape() {
        let env = super::super::render::templates();
        let html = env
            .get_template("message.html")
            .and_then(|t| t.render(context! { title => "T", message => "<b>&" }))
            .expect("renders");
        assert!(html.contains("&lt;b&gt;&amp;"), "{html}");
        let html = env
            .get_template("invite.html")
            .and_then(|t| {
                t.render(context! {
                    title => "T", lead => "L", uri => "xmpp:x?a;b=\"c\"", qr_svg => "<svg/>",
                    apps => crate::config::web_apps::defaults(), other_apps => Vec::<crate::config::web_apps::App>::new(),
                })
            })
            .expect("renders");
        assert!(
            html.contains("<svg/>") && html.contains("Conversations"),
            "{html}"
        );
        assert!(html.contains("xmpp:x?a;b=&quot;c&quot;"), "{html}");
    }
}
