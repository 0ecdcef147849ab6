//! `GET /invite/TOKEN`: the page an invite link opens. Who invites to which
//! domain, a button with the invite URI, a QR code of it, and clients for
//! the visitor's platform. Unknown tokens get 404, spent ones 410. Rendered
//! on the server, no JavaScript.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::context;

use super::messages::text;
use super::{apps, HttpState};
use crate::invites::model::InviteStatus;
use crate::invites::uri::invite_uri;
use crate::invites::{InviteKind, Token};
use crate::ledger::now_millis;

fn page(state: &HttpState, status: StatusCode, template: &str, ctx: minijinja::Value) -> Response {
    let rendered = state
        .templates
        .get_template(template)
        .and_then(|t| t.render(ctx));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, template, "page rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

fn message(state: &HttpState, status: StatusCode, title: &str, body: &str) -> Response {
    page(
        state,
        status,
        "message.html",
        context! { title => text(title, &[]), message => text(body, &[]) },
    )
}

/// The invite URI as an SVG QR code.
fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build(),
    )
}

pub async fn invite_page(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let not_found = || {
        message(
            &state,
            StatusCode::NOT_FOUND,
            "title.not_found",
            "not_found.body",
        )
    };
    let Some(token) = Token::parse(&token) else {
        return not_found();
    };
    let Some(ledger) = state.readiness.ledger.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting up\n").into_response();
    };
    let invite = match ledger.read(&token, |l| l.get(&token).cloned()).await {
        Ok(Some(invite)) => invite,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "invite page: ledger unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again shortly\n").into_response();
        }
    };
    let gone = match invite.status(now_millis()) {
        InviteStatus::Active => None,
        InviteStatus::Expired => Some("gone.expired"),
        InviteStatus::Revoked => Some("gone.revoked"),
        InviteStatus::UsedUp => Some("gone.used_up"),
    };
    if let Some(body) = gone {
        return message(&state, StatusCode::GONE, "title.gone", body);
    }
    let domain = state.config.domain.as_str();
    let uri = invite_uri(&invite.spec, domain);
    let lead = match (&invite.spec.kind, &invite.spec.inviter) {
        (InviteKind::Contact, Some(inviter)) => {
            let who = format!("{inviter}@{domain}");
            text("invite.contact", &[("inviter", &who), ("domain", domain)])
        }
        _ => text("invite.account", &[("domain", domain)]),
    };
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
    page(
        &state,
        StatusCode::OK,
        "invite.html",
        context! {
            title => text("title.invite", &[]),
            lead,
            uri,
            qr_svg => qr_svg(&invite_uri(&invite.spec, domain)).unwrap_or_default(),
            open => text("invite.open", &[]),
            scan => text("invite.scan", &[]),
            apps_intro => text("invite.apps", &[]),
            apps_other => text("invite.apps_other", &[]),
            apps => mine,
            other_apps => others,
            expires => text("invite.expires", &[("expires", &expires)]),
        },
    )
}

/// The page templates, compiled into the binary.
pub fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    for (name, source) in [
        ("page.html", include_str!("templates/page.html")),
        ("invite.html", include_str!("templates/invite.html")),
        ("message.html", include_str!("templates/message.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            // The templates are part of the build; this is a bug, caught by tests.
            tracing::error!(error = %e, name, "bad built-in template");
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_templates_render_and_escape() {
        let env = templates();
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
                    apps => apps::defaults(), other_apps => Vec::<apps::App>::new(),
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
