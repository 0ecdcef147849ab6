//! SASL PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`.

use super::SaslError;

#[derive(Debug, PartialEq, Eq)]
pub struct PlainMessage {
    pub authzid: Option<String>,
    pub username: String,
    pub password: String,
}

pub fn parse(message: &[u8]) -> Result<PlainMessage, SaslError> {
    let text = std::str::from_utf8(message).map_err(|_| SaslError::MalformedRequest)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::MalformedRequest);
    };
    if username.is_empty() || password.is_empty() {
        return Err(SaslError::MalformedRequest);
    }
    Ok(PlainMessage {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc4616_messages() {
        let m = parse(b"\0tim\0tanstaaftanstaaf").unwrap();
        assert_eq!(m.authzid, None);
        assert_eq!(m.username, "tim");
        assert_eq!(m.password, "tanstaaftanstaaf");
        let m = parse(b"Ursel\0Kurt\0xipj3plmq").unwrap();
        assert_eq!(m.authzid.as_deref(), Some("Ursel"));
        for bad in [
            &b"tim"[..],
            b"\0tim",
            b"\0\0pw",
            b"\0tim\0",
            b"a\0b\0c\0d",
            b"\0\xff\0pw",
        ] {
            assert_eq!(parse(bad), Err(SaslError::MalformedRequest));
        }
    }
}
