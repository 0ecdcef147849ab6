//! `authorization: Bearer TOKEN` on gRPC, both ends: the server-side check
//! (admin API with the admin token, peer API with the cluster secret) and the
//! client-side header (CLI, peer clients, load harness), in one place.

use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

const HEADER: &str = "authorization";

#[derive(Debug, thiserror::Error)]
#[error("the token has characters an HTTP header cannot carry")]
pub struct InvalidToken;

/// Whether `header` (an `authorization` value) carries `token`; compared in
/// constant time. An empty expected token admits nobody.
pub fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    !token.is_empty() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// Server side: admits requests carrying the token, refuses the rest with
/// UNAUTHENTICATED and `refusal`.
#[derive(Clone)]
pub struct Check {
    token: String,
    refusal: &'static str,
}

impl Check {
    pub fn new(token: String, refusal: &'static str) -> Check {
        Check { token, refusal }
    }
}

impl Interceptor for Check {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get(HEADER).and_then(|v| v.to_str().ok());
        if authorized(header, &self.token) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(self.refusal))
        }
    }
}

/// Client side: puts the token on every request.
#[derive(Clone)]
pub struct Attach {
    header: MetadataValue<Ascii>,
}

impl Attach {
    pub fn new(token: &str) -> Result<Attach, InvalidToken> {
        let header = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| InvalidToken)?;
        Ok(Attach { header })
    }
}

impl Interceptor for Attach {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(HEADER, self.header.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_passes() {
        let t = "s3cret-token-0123456789";
        assert!(authorized(Some(&format!("Bearer {t}")), t));
        assert!(!authorized(Some(&format!("Bearer {t}x")), t));
        assert!(!authorized(Some(t), t));
        assert!(!authorized(None, t));
        assert!(!authorized(Some("Bearer "), ""));
        let mut attach = Attach::new(t).unwrap();
        let mut check = Check::new(t.to_owned(), "no");
        let request = attach.call(Request::new(())).unwrap();
        assert!(check.call(request).is_ok());
        assert!(check.call(Request::new(())).is_err());
        assert!(Attach::new("bad\ntoken").is_err());
    }
}
