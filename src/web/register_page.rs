//! `GET/POST /register/TOKEN`: registering in the browser with an invite, for
//! people whose app cannot (or who would rather not) use the invite link. The
//! form goes through the same `Registrar` as in-band registration — the same
//! checks, the same saga, the same per-address limit — and its errors come back
//! on the form with the username kept. Reset invites get a new-password form.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use minijinja::context;
use serde::Deserialize;

use super::invite_page::{active_invite, lead};
use super::messages::text;
use super::render::{message, page};
use super::{apps, csrf, HttpState};
use crate::clock::now_millis;
use crate::invites::model::Invite;
use crate::invites::{InviteKind, RedeemPath};
use crate::registration::{ProvenInvite, RegistrationError, Request};

/// The submitted form; missing fields are empty, and answered as such.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RegisterForm {
    username: String,
    password: String,
    password_confirm: String,
    csrf: String,
}

/// What the form page shows besides the fields.
struct FormView<'a> {
    invite: &'a Invite,
    username: &'a str,
    error: Option<String>,
    nonce: &'a str,
}

pub async fn form(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let invite = match registering_invite(&state, &token).await {
        Ok(invite) => invite,
        Err(response) => return response,
    };
    let nonce = csrf::cookie_nonce(&headers).unwrap_or_else(csrf::new_nonce);
    let username = invite
        .spec
        .username
        .as_deref()
        .unwrap_or_default()
        .to_owned();
    let view = FormView {
        invite: &invite,
        username: &username,
        error: None,
        nonce: &nonce,
    };
    with_cookie(&state, render_form(&state, StatusCode::OK, view), &nonce)
}

pub async fn submit(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<RegisterForm>,
) -> Response {
    let invite = match registering_invite(&state, &token).await {
        Ok(invite) => invite,
        Err(response) => return response,
    };
    let cookie = csrf::cookie_nonce(&headers);
    let forged = !csrf::same_origin(&headers, state.config.web_base_url.as_deref())
        || cookie.as_deref().is_none_or(|nonce| {
            !csrf::verify(
                &state.form_key,
                nonce,
                invite.spec.token.as_str(),
                &form.csrf,
            )
        });
    // Reset invites name the account; the field is not even shown.
    let username = match (&invite.spec.kind, &invite.spec.username) {
        (InviteKind::Reset, Some(name)) => name.to_string(),
        _ => form.username.trim().to_owned(),
    };
    let nonce = cookie.unwrap_or_else(csrf::new_nonce);
    let again = |status, error: String| {
        let view = FormView {
            invite: &invite,
            username: &username,
            error: Some(error),
            nonce: &nonce,
        };
        with_cookie(&state, render_form(&state, status, view), &nonce)
    };
    if forged {
        tracing::info!(peer = %peer, "web registration refused: form token or origin mismatch");
        return again(StatusCode::FORBIDDEN, text("error.form_expired", &[]));
    }
    if form.password != form.password_confirm {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            text("error.password_mismatch", &[]),
        );
    }
    let Some(registrar) = state.readiness.registrar.get() else {
        return again(
            StatusCode::SERVICE_UNAVAILABLE,
            text("error.unavailable", &[]),
        );
    };
    let request = Request {
        peer: client_ip(&state, peer, &headers),
        invite: Some(ProvenInvite {
            token: invite.spec.token.clone(),
            validated_at: now_millis(),
        }),
        username: Some(&username),
        password: Some(&form.password),
        path: RedeemPath::Web,
    };
    match registrar.register(request).await {
        Ok(done) => registered(&state, &headers, &invite, done.username.as_str()),
        // Spent meanwhile (or just now by someone else): the same page as a
        // fresh visit to the link would show.
        Err(RegistrationError::InvalidInvite) => match active_invite(&state, &token).await {
            Err(response) => response,
            Ok(_) => again(StatusCode::CONFLICT, text("error.invalid_invite", &[])),
        },
        Err(e) => {
            let (status, error) = form_error(&e, &username);
            again(status, error)
        }
    }
}

/// The invite behind `token` if it can still create (or reset) an account;
/// otherwise the page to show instead.
async fn registering_invite(state: &HttpState, token: &str) -> Result<Invite, Response> {
    let invite = active_invite(state, token).await?;
    // The same switch that turns off in-band registration closes this door.
    if !state.config.allow_registration {
        return Err(message(
            state,
            StatusCode::FORBIDDEN,
            "title.register",
            "register.disabled",
        ));
    }
    if !invite.spec.registers() {
        return Err(message(
            state,
            StatusCode::FORBIDDEN,
            "title.register",
            "register.not_allowed",
        ));
    }
    Ok(invite)
}

/// The status and the form's message for a refused registration.
fn form_error(e: &RegistrationError, username: &str) -> (StatusCode, String) {
    use RegistrationError::*;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    match e {
        RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            text("error.rate_limited", &[]),
        ),
        Busy => (StatusCode::SERVICE_UNAVAILABLE, text("error.busy", &[])),
        InvalidUsername => (unprocessable, text("error.username_invalid", &[])),
        PasswordMissing => (unprocessable, text("error.password_missing", &[])),
        PasswordTooShort(min) => (
            unprocessable,
            text("error.password_short", &[("min", &min.to_string())]),
        ),
        PasswordNotAllowed => (unprocessable, text("error.password_chars", &[])),
        WrongUsername => (unprocessable, text("error.wrong_username", &[])),
        NotAllowed => (StatusCode::FORBIDDEN, text("register.not_allowed", &[])),
        UsernameTaken => (
            StatusCode::CONFLICT,
            text("error.username_taken", &[("username", username)]),
        ),
        InvalidInvite => (StatusCode::CONFLICT, text("error.invalid_invite", &[])),
        Quarantined => (
            StatusCode::CONFLICT,
            text("error.username_quarantined", &[("username", username)]),
        ),
        AdminName => (StatusCode::FORBIDDEN, text("error.username_admin", &[])),
        LeaseLost => (StatusCode::SERVICE_UNAVAILABLE, text("error.busy", &[])),
        // Web registration always carries an invite.
        InviteRequired | LedgerUnavailable | StoreUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            text("error.unavailable", &[]),
        ),
    }
}

fn render_form(state: &HttpState, status: StatusCode, view: FormView<'_>) -> Response {
    let spec = &view.invite.spec;
    let domain = state.config.domain.as_str();
    let reset = spec.kind == InviteKind::Reset;
    let (title, intro) = if reset {
        let jid = format!("{}@{domain}", spec.username.as_deref().unwrap_or_default());
        (
            text("title.reset", &[]),
            text("reset.intro", &[("jid", &jid)]),
        )
    } else {
        (text("title.register", &[]), lead(spec, domain))
    };
    page(
        state,
        status,
        "register.html",
        context! {
            title,
            intro,
            reset,
            error => view.error,
            username => view.username,
            // An account invite for one name: the name is fixed.
            username_fixed => spec.username.is_some(),
            domain,
            csrf => csrf::field(&state.form_key, view.nonce, spec.token.as_str()),
            label_username => text("register.username", &[]),
            label_password => text("register.password", &[]),
            label_confirm => text("register.confirm", &[]),
            password_hint => text(
                "register.password_hint",
                &[("min", &state.config.min_password_length.to_string())],
            ),
            min_password => state.config.min_password_length,
            submit => text(if reset { "reset.submit" } else { "register.submit" }, &[]),
        },
    )
}

fn registered(state: &HttpState, headers: &HeaderMap, invite: &Invite, username: &str) -> Response {
    let domain = state.config.domain.as_str();
    let jid = format!("{username}@{domain}");
    let spec = &invite.spec;
    let (title, body) = match spec.kind {
        InviteKind::Reset => ("title.reset_done", text("reset.done", &[("jid", &jid)])),
        _ => (
            "title.registered",
            text("registered.body", &[("jid", &jid)]),
        ),
    };
    let contact = match (&spec.kind, &spec.inviter) {
        (InviteKind::Contact, Some(inviter)) => Some(text(
            "registered.contact",
            &[("inviter", &format!("{inviter}@{domain}"))],
        )),
        _ => None,
    };
    let platform = apps::platform(
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
    );
    let apps: Vec<_> = state
        .config
        .web_apps
        .iter()
        .filter(|a| a.platforms.iter().any(|p| p == platform))
        .cloned()
        .collect();
    page(
        state,
        StatusCode::OK,
        "registered.html",
        context! {
            title => text(title, &[]),
            body,
            jid,
            contact,
            apps_intro => text("registered.apps", &[]),
            apps,
        },
    )
}

fn with_cookie(state: &HttpState, mut response: Response, nonce: &str) -> Response {
    let secure = state
        .config
        .web_base_url
        .as_deref()
        .is_some_and(|b| b.starts_with("https://"));
    response
        .headers_mut()
        .insert(header::SET_COOKIE, csrf::set_cookie(nonce, secure));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The address the per-IP limit counts: the connection's, or behind a trusted
/// proxy the last `X-Forwarded-For` entry (the one that proxy added).
fn client_ip(state: &HttpState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if !state.config.http_trust_forwarded_for {
        return peer.ip();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_text_and_a_client_error_or_unavailable() {
        use RegistrationError::*;
        for e in [
            RateLimited,
            Busy,
            InvalidUsername,
            PasswordMissing,
            PasswordTooShort(8),
            PasswordNotAllowed,
            WrongUsername,
            NotAllowed,
            UsernameTaken,
            Quarantined,
            AdminName,
            LeaseLost,
            InvalidInvite,
            LedgerUnavailable,
            StoreUnavailable,
        ] {
            let (status, msg) = form_error(&e, "ann");
            assert!(status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                !msg.starts_with("error.") && !msg.starts_with("register."),
                "{e:?}: {msg}"
            );
        }
        assert!(form_error(&UsernameTaken, "ann").1.contains("ann"));
        assert!(form_error(&PasswordTooShort(8), "ann").1.contains('8'));
    }
}
