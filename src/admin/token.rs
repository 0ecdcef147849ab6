//! The admin API's bearer token: from config, or generated at first start in
//! the data dir (mode 0600).

use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// The configured token, else the one in the data dir (created if missing).
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> std::io::Result<String> {
    if let Some(t) = configured {
        return Ok(t.to_owned());
    }
    let path = token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is empty; remove it to have a new token made",
                path.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = crate::secrets::random_id(32);
            crate::secrets::write_private(&path, format!("{token}\n").as_bytes())?;
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

/// Compares an `authorization` header value with the token in constant time.
pub fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    !token.is_empty() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// A tonic interceptor admitting requests that carry `Bearer <token>`;
/// others get UNAUTHENTICATED with `refusal`.
pub fn bearer_check(
    token: String,
    refusal: &'static str,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req: tonic::Request<()>| {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if authorized(header, &token) {
            Ok(req)
        } else {
            Err(tonic::Status::unauthenticated(refusal))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(None, dir.path()).unwrap();
        let b = load_or_create(None, dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= 32);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(token_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
        assert_eq!(
            load_or_create(Some("configured-token-123"), dir.path()).unwrap(),
            "configured-token-123"
        );
        assert!(authorized(Some(&format!("Bearer {a}")), &a));
        assert!(!authorized(Some(&format!("Bearer {a}x")), &a));
        assert!(!authorized(Some(&a), &a));
        assert!(!authorized(None, &a));
    }
}
