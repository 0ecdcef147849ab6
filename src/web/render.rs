//! Rendering the server-side pages: the templates compiled into the binary,
//! and the plain message page (not found, gone, unavailable…).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::context;

use super::messages::text;
use super::HttpState;

pub fn page(
    state: &HttpState,
    status: StatusCode,
    template: &str,
    ctx: minijinja::Value,
) -> Response {
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

/// A page with a title and one paragraph, both catalogue ids.
pub fn message(state: &HttpState, status: StatusCode, title: &str, body: &str) -> Response {
    page(
        state,
        status,
        "message.html",
        context! { title => text(title, &[]), message => text(body, &[]) },
    )
}

/// The page templates, compiled into the binary.
pub fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    for (name, source) in [
        ("page.html", include_str!("templates/page.html")),
        ("invite.html", include_str!("templates/invite.html")),
        ("message.html", include_str!("templates/message.html")),
        ("register.html", include_str!("templates/register.html")),
        ("registered.html", include_str!("templates/registered.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            // The templates are part of the build; this is a bug, caught by tests.
            tracing::error!(error = %e, name, "bad built-in template");
        }
    }
    env
}
