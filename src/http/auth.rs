//! The token that guards profiles and dumps (they reveal code and data): `RDEBUG_HTTP_TOKEN`,
//! passed as `Authorization: Bearer <token>` or `?token=<token>` (`go tool pprof` can only pass
//! the query form).
//!
//! Decision: when the variable is set (and not empty) the token is required for the guarded
//! routes whatever address the server listens on, so setting it always means "locked"; the
//! warning printed for a non-loopback address says whether a token is set.

use hyper::StatusCode;
use hyper::header::{self, HeaderMap};

use super::params;
use super::reply::{self, Refusal};

/// The variable holding the token.
pub(crate) const TOKEN_ENV: &str = "RDEBUG_HTTP_TOKEN";
/// Longest token read from the environment, bytes (a longer one is cut).
const MAX_TOKEN: usize = 1024;

/// The token required for guarded routes, if any.
#[derive(Clone, Default)]
pub(crate) struct Token(Option<Vec<u8>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Token(set)"
        } else {
            "Token(none)"
        })
    }
}

impl Token {
    /// From `RDEBUG_HTTP_TOKEN`; an empty or unset variable is no token.
    pub(crate) fn from_env() -> Token {
        let Some(v) = std::env::var_os(TOKEN_ENV) else {
            return Token(None);
        };
        #[cfg(unix)]
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec();
        #[cfg(not(unix))]
        let bytes = v.to_string_lossy().into_owned().into_bytes();
        let mut bytes = bytes;
        bytes.truncate(MAX_TOKEN);
        Token((!bytes.is_empty()).then_some(bytes))
    }

    /// Whether a token is required.
    pub(crate) fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// `Ok` when no token is required or the request carries the right one; else 401 (none
    /// given) or 403 (a wrong one).
    pub(crate) fn check(&self, headers: &HeaderMap, query: &str) -> Result<(), Refusal> {
        let Some(want) = &self.0 else { return Ok(()) };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
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
        let t = Token(Some(b"s3cret".to_vec()));
        let mut h = HeaderMap::new();
        assert_eq!(t.check(&h, "").unwrap_err().status(), 401);
        assert_eq!(t.check(&h, "token=nope").unwrap_err().status(), 403);
        assert_eq!(t.check(&h, "token=s3cre").unwrap_err().status(), 403);
        assert!(t.check(&h, "seconds=1&token=s3cret").is_ok());
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(t.check(&h, "").is_ok());
        h.insert(header::AUTHORIZATION, "Bearer s3cretX".parse().unwrap());
        assert_eq!(t.check(&h, "").unwrap_err().status(), 403);
        assert!(Token(None).check(&h, "").is_ok());
        assert!(equal(b"", b"") && !equal(b"a", b"") && !equal(b"ab", b"ac"));
    }
}
