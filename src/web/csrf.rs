//! CSRF protection for the web forms, without server-side sessions (any node
//! of a cluster may get the POST): the page sets a random cookie and puts
//! HMAC(key, cookie ‖ invite token) in a hidden field. Another site can make a
//! browser post the form but can neither read the cookie nor compute the field;
//! a cross-site `Origin` is refused as well.

use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const COOKIE: &str = "usher_form";

/// The form cookie's value from the request, if it has a plausible one.
pub fn cookie_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| {
            (16..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

pub fn new_nonce() -> String {
    crate::secrets::random_id(24)
}

/// The `Set-Cookie` header for `nonce`: scoped to the forms, invisible to
/// scripts, never sent along with another site's request.
pub fn set_cookie(nonce: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!("{COOKIE}={nonce}; Path=/register; HttpOnly; SameSite=Strict{secure}");
    // The nonce is URL-safe ASCII, so this cannot fail; an empty cookie just fails the check later.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// HMAC takes keys of any length, so this is `None` only in theory.
fn mac(key: &[u8], nonce: &str, scope: &str) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(nonce.as_bytes());
    mac.update(b"\0");
    mac.update(scope.as_bytes());
    Some(mac)
}

/// The hidden field's value for this cookie and form.
pub fn field(key: &[u8], nonce: &str, scope: &str) -> String {
    mac(key, nonce, scope)
        .map(|m| URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Whether `given` is this cookie's field for this form (constant time).
pub fn verify(key: &[u8], nonce: &str, scope: &str, given: &str) -> bool {
    let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
        return false;
    };
    mac(key, nonce, scope).is_some_and(|m| m.verify_slice(&given).is_ok())
}

/// False when the browser says the request comes from another origin than
/// the `Host` it asked, or than `public_base` (`web_base_url`, for a proxy
/// that rewrites `Host`).
pub fn same_origin(headers: &HeaderMap, public_base: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not sent by every browser on same-origin POSTs
    };
    let authority = |url: &str| {
        url.split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest).to_ascii_lowercase())
    };
    let Some(origin) = authority(origin) else {
        return false; // "null": a sandboxed or privacy-sensitive context
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    host.as_deref() == Some(origin.as_str())
        || public_base.and_then(authority).as_deref() == Some(origin.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_binds_cookie_key_and_form() {
        let key = b"0123456789abcdef0123456789abcdef";
        let f = field(key, "nonce-aaaaaaaaaaaaaaa", "tok");
        assert!(verify(key, "nonce-aaaaaaaaaaaaaaa", "tok", &f));
        assert!(!verify(key, "nonce-bbbbbbbbbbbbbbb", "tok", &f));
        assert!(!verify(key, "nonce-aaaaaaaaaaaaaaa", "other", &f));
        assert!(!verify(b"another key", "nonce-aaaaaaaaaaaaaaa", "tok", &f));
        assert!(!verify(key, "nonce-aaaaaaaaaaaaaaa", "tok", "not base64!"));
    }

    #[test]
    fn reads_its_cookie_among_others_and_refuses_odd_values() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; usher_form=abcdefghijklmnopqrst; c=d"),
        );
        assert_eq!(cookie_nonce(&h).as_deref(), Some("abcdefghijklmnopqrst"));
        h.insert(header::COOKIE, HeaderValue::from_static("usher_form=short"));
        assert_eq!(cookie_nonce(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("usher_form=abcdefghijklmnopqrst\"x"),
        );
        assert_eq!(cookie_nonce(&h), None);
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("chat.example:5280"));
        assert!(same_origin(&h, None));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://chat.example:5280"),
        );
        assert!(same_origin(&h, None));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h, None));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h, None));
        // Behind a proxy that rewrites Host: the public base URL counts.
        h.insert(header::HOST, HeaderValue::from_static("usher-0.usher:5280"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://Join.Example"),
        );
        assert!(same_origin(&h, Some("https://join.example/")));
        assert!(!same_origin(&h, Some("https://other.example")));
    }
}
