//! What can go wrong: [`Error`] for starting rdebug, [`ConfigError`] for one unusable `RDEBUG`
//! item.

use std::fmt;

/// What can go wrong starting rdebug.
///
/// ```
/// let err = rdebug::Builder::new().parse("format=xml").unwrap_err();
/// assert_eq!(err.to_string(), "RDEBUG item format=xml: expected text or json");
/// ```
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// An `RDEBUG` item that cannot be used.
    Config(ConfigError),
    /// [`try_init`](crate::try_init) was called after rdebug had already been started from
    /// `RDEBUG`.
    AlreadyStarted,
    /// The reporter thread could not be spawned.
    Spawn(std::io::Error),
    /// The debug server could not listen on its address (feature `http`).
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why not.
        source: std::io::Error,
    },
    /// The debug server's thread or runtime could not be started (feature `http`).
    ServerThread(std::io::Error),
    /// The debug server refused to start as configured, because it would be open to more than
    /// it should (feature `http`): a non-loopback address without a token, or a token it cannot
    /// use. The text says why and names the setting that changes it.
    Refused(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "RDEBUG item {e}"),
            Error::AlreadyStarted => f.write_str("rdebug was already started from RDEBUG"),
            Error::Spawn(e) => write!(f, "cannot start the rdebug reporter thread: {e}"),
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::ServerThread(e) => write!(f, "cannot start the rdebug debug server: {e}"),
            Error::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Spawn(e) | Error::ServerThread(e) => Some(e),
            Error::Bind { source, .. } => Some(source),
            Error::AlreadyStarted | Error::Refused(_) => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

/// One `RDEBUG` item that could not be used, with what is accepted instead.
///
/// Its `Display` is the warning line's text, without the `rdebug: warning: ` prefix.
///
/// ```
/// let (_, problems) = rdebug::Config::parse("schedtrace=abc");
/// assert_eq!(
///     problems[0].to_string(),
///     "schedtrace=abc: expected a whole number of milliseconds from 0 to 86400000"
/// );
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The item as written (trimmed, escaped, cut to a readable length).
    pub item: String,
    /// What is accepted there.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.item, self.expected)
    }
}

impl std::error::Error for ConfigError {}
