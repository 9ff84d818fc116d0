//! The admin token: `Authorization: Bearer <token>` on every admin action.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use crate::error::{Error, Result};

/// Lets the request through when it carries the configured token. Without a
/// configured token admin actions are off: an open admin API on a machine
/// whose owner never chose a secret would be worse than none.
pub fn require_admin(configured: Option<&str>, headers: &HeaderMap) -> Result<()> {
    let Some(expected) = configured.filter(|t| !t.is_empty()) else {
        return Err(Error::AdminDisabled(
            "admin actions are disabled: set admin_token in the config or STRATA_ADMIN_TOKEN"
                .into(),
        ));
    };
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(Error::MissingToken(
            "this action needs the admin token: send Authorization: Bearer <token>".into(),
        ));
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| {
            Error::MissingToken(
                "the Authorization header is not a Bearer token: send Authorization: Bearer <token>"
                    .into(),
            )
        })?;
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Error::WrongToken("the admin token is wrong".into()))
    }
}

/// Compares in time that does not depend on where a guess goes wrong.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_configured_bearer_token_passes() {
        assert!(require_admin(Some("s3cret"), &with("Bearer s3cret")).is_ok());
        assert!(require_admin(Some("s3cret"), &with("bearer  s3cret ")).is_ok());
        assert!(matches!(
            require_admin(Some("s3cret"), &with("Bearer s3cre")),
            Err(Error::WrongToken(_))
        ));
        assert!(matches!(
            require_admin(Some("s3cret"), &with("Bearer s3cret2")),
            Err(Error::WrongToken(_))
        ));
        assert!(matches!(
            require_admin(Some("s3cret"), &with("Basic czNjcmV0Og==")),
            Err(Error::MissingToken(_))
        ));
        assert!(matches!(
            require_admin(Some("s3cret"), &HeaderMap::new()),
            Err(Error::MissingToken(_))
        ));
        assert!(matches!(
            require_admin(None, &with("Bearer s3cret")),
            Err(Error::AdminDisabled(_))
        ));
        assert!(matches!(
            require_admin(Some(""), &with("Bearer ")),
            Err(Error::AdminDisabled(_))
        ));
    }
}
