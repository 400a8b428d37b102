//! The token that guards profiles and dumps (they reveal code and data): `RDEBUG_HTTP_TOKEN`,
//! passed as `Authorization: Bearer <token>` or `?token=<token>` (`go tool pprof` can only pass
//! the query form).
//!
//! Decision: when the variable is set (and not empty) the token is required for the guarded
//! routes whatever address the server listens on, so setting it always means "locked". A token
//! longer than [`MAX_TOKEN`] bytes is refused at start (`serve` fails, `RDEBUG=http=` warns and
//! does not serve); the `axum` router, which cannot fail, then answers every guarded route with
//! 503 naming the problem, so a bad token never leaves the routes open. The scheme of
//! `Authorization: Bearer` is compared without case (RFC 9110 §11.1).

use hyper::StatusCode;
use hyper::header::{self, HeaderMap};

use super::params;
use super::reply::{self, Refusal};

/// The variable holding the token.
pub(crate) const TOKEN_ENV: &str = "RDEBUG_HTTP_TOKEN";
/// Longest token accepted, bytes.
pub(crate) const MAX_TOKEN: usize = 1024;

/// The token required for guarded routes, if any.
#[derive(Clone, Default)]
pub(crate) struct Token {
    want: Option<Vec<u8>>,
    /// Why the variable cannot be used (then every guarded request is refused).
    unusable: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (&self.want, &self.unusable) {
            (_, Some(_)) => "Token(unusable)",
            (Some(_), None) => "Token(set)",
            (None, None) => "Token(none)",
        })
    }
}

impl Token {
    /// From `RDEBUG_HTTP_TOKEN`; an empty or unset variable is no token. `Err` names the problem
    /// of one that cannot be used (too long).
    pub(crate) fn from_env() -> Result<Token, String> {
        let Some(v) = std::env::var_os(TOKEN_ENV) else {
            return Ok(Token::default());
        };
        #[cfg(unix)]
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec();
        #[cfg(not(unix))]
        let bytes = v.to_string_lossy().into_owned().into_bytes();
        Token::new(bytes)
    }

    fn new(bytes: Vec<u8>) -> Result<Token, String> {
        if bytes.len() > MAX_TOKEN {
            return Err(format!(
                "{TOKEN_ENV} is {} bytes long; at most {MAX_TOKEN} are accepted",
                bytes.len()
            ));
        }
        Ok(Token {
            want: (!bytes.is_empty()).then_some(bytes),
            unusable: None,
        })
    }

    /// A token that refuses every guarded request, saying `why`.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))] // the axum router, which cannot fail
    pub(crate) fn unusable(why: String) -> Token {
        Token {
            want: None,
            unusable: Some(why),
        }
    }

    /// Whether a token is required.
    pub(crate) fn is_set(&self) -> bool {
        self.want.is_some() || self.unusable.is_some()
    }

    /// `Ok` when no token is required or the request carries the right one; else 401 (none
    /// given) or 403 (a wrong one).
    pub(crate) fn check(&self, headers: &HeaderMap, query: &str) -> Result<(), Refusal> {
        if let Some(why) = &self.unusable {
            return Err(Box::new(reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the debug server is locked: {why}"),
            )));
        }
        let Some(want) = &self.want else {
            return Ok(());
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
            .map(<[u8]>::to_vec);
        let given =
            bearer.or_else(|| params::value(query, "token").map(|t| t.into_owned().into_bytes()));
        match given {
            None => {
                let mut r = reply::error(
                    StatusCode::UNAUTHORIZED,
                    "this endpoint needs the token from RDEBUG_HTTP_TOKEN: \
                     Authorization: Bearer <token> or ?token=<token>",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                Err(Box::new(r))
            }
            Some(g) if equal(&g, want) => Ok(()),
            Some(_) => Err(Box::new(reply::error(
                StatusCode::FORBIDDEN,
                "wrong token (the one in RDEBUG_HTTP_TOKEN is needed)",
            ))),
        }
    }
}

/// The credentials of an `Authorization: Bearer <token>` value (scheme without case, spaces
/// after it skipped); `None` for another scheme.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..6)?;
    let rest = value.get(6..)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    rest.get(start..)
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
fn equal(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked() {
        let t = Token::new(b"s3cret".to_vec()).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(t.check(&h, "").unwrap_err().status(), 401);
        assert_eq!(t.check(&h, "token=nope").unwrap_err().status(), 403);
        assert_eq!(t.check(&h, "token=s3cre").unwrap_err().status(), 403);
        assert!(t.check(&h, "seconds=1&token=s3cret").is_ok());
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(t.check(&h, "").is_ok());
        h.insert(header::AUTHORIZATION, "Bearer s3cretX".parse().unwrap());
        assert_eq!(t.check(&h, "").unwrap_err().status(), 403);
        assert!(Token::default().check(&h, "").is_ok());
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            h.insert(
                header::AUTHORIZATION,
                format!("{scheme}  s3cret").parse().unwrap(),
            );
            assert!(t.check(&h, "").is_ok(), "{scheme}");
        }
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert_eq!(t.check(&h, "").unwrap_err().status(), 401);
        h.insert(header::AUTHORIZATION, "Bearers3cret".parse().unwrap());
        assert_eq!(t.check(&h, "").unwrap_err().status(), 401);
        assert!(Token::new(vec![b'x'; MAX_TOKEN]).is_ok());
        let long = Token::new(vec![b'x'; MAX_TOKEN + 1]).unwrap_err();
        assert!(long.contains("1025 bytes long"), "{long}");
        let locked = Token::unusable(long);
        assert_eq!(locked.check(&h, "token=x").unwrap_err().status(), 503);
        assert!(equal(b"", b"") && !equal(b"a", b"") && !equal(b"ab", b"ac"));
    }
}
