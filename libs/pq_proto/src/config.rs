//! Connection strings: libpq URI and `key=value` forms parsed into [`ConnConfig`].

use std::fmt;
use std::time::Duration;

use crate::ReplError;

/// Port used when the connection string names none (PostgreSQL's default).
pub const DEFAULT_PORT: u16 = 5432;
/// Host used when the connection string names none. Unix-domain sockets are not
/// supported, so this is TCP to the local machine rather than libpq's socket.
pub const DEFAULT_HOST: &str = "localhost";
/// Connect timeout used when the connection string has no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What replaces the password in [`ConnConfig::masked`] and in `Debug` output.
const PASSWORD_MASK: &str = "********";

/// The keywords we understand, in both connection string forms.
const KNOWN_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "dbname",
    "application_name",
    "connect_timeout",
    "sslmode",
];

/// Where and as whom to connect to a PostgreSQL server.
///
/// Built by [`ConnConfig::parse`] from a libpq connection string, or directly.
/// The password never appears in `Debug` output or in [`ConnConfig::masked`];
/// those are the only forms that may be logged or returned by an API.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnConfig {
    /// Host name or IP address (TCP only; no Unix-domain sockets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Role to log in as.
    pub user: String,
    /// Password, for cleartext, md5 and SCRAM-SHA-256 authentication.
    pub password: Option<String>,
    /// Database; the server defaults it to the user name. Physical replication
    /// connections ignore it.
    pub dbname: Option<String>,
    /// Shown in `pg_stat_activity` / `pg_stat_replication.application_name`.
    pub application_name: Option<String>,
    /// Limit for TCP connect plus startup and authentication.
    pub connect_timeout: Duration,
}

impl fmt::Debug for ConnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| PASSWORD_MASK))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

fn config_err(msg: impl Into<String>) -> ReplError {
    ReplError::Config(msg.into())
}

impl ConnConfig {
    /// Parses a libpq connection string, either the URI form
    /// `postgresql://user:pass@host:port/db?application_name=x&connect_timeout=5`
    /// (components percent-decoded; `postgres://` also accepted) or the
    /// keyword form `host=h port=5432 user=u password='p w'`.
    ///
    /// Accepted keywords: `host`, `port`, `user`, `password`, `dbname`,
    /// `application_name`, `connect_timeout` (whole seconds, > 0) and `sslmode`
    /// (`disable`, `allow` or `prefer`; there is no TLS, so the connection is
    /// always plain). Unknown keywords, `sslmode=require`/`verify-*`, several
    /// hosts and Unix-socket paths are errors. A missing user is an error.
    ///
    /// Error messages never contain the password.
    pub fn parse(connstr: &str) -> Result<Self, ReplError> {
        let trimmed = connstr.trim();
        let pairs = if let Some(rest) = trimmed
            .strip_prefix("postgresql://")
            .or_else(|| trimmed.strip_prefix("postgres://"))
        {
            parse_uri(rest)?
        } else if trimmed.contains("://") {
            return Err(config_err(
                "connection URI must start with postgresql:// or postgres://",
            ));
        } else {
            parse_keyword_value(trimmed)?
        };
        Self::from_pairs(pairs)
    }

    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, ReplError> {
        let unknown: Vec<&str> = pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !KNOWN_KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(config_err(format!(
                "unknown connection parameter(s): {}; supported are: {}",
                unknown.join(", "),
                KNOWN_KEYS.join(", ")
            )));
        }
        let mut cfg = ConnConfig {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            user: String::new(),
            password: None,
            dbname: None,
            application_name: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        };
        // Later values win, as in libpq (URI query parameters override the
        // URI's own components).
        for (key, value) in pairs {
            match key.as_str() {
                "host" => cfg.host = parse_host(&value)?,
                "port" => cfg.port = parse_port(&value)?,
                "user" => cfg.user = value,
                "password" => cfg.password = Some(value),
                "dbname" => cfg.dbname = non_empty(value),
                "application_name" => cfg.application_name = non_empty(value),
                "connect_timeout" => cfg.connect_timeout = parse_connect_timeout(&value)?,
                "sslmode" => check_sslmode(&value)?,
                _ => unreachable!("unknown keys were rejected above"),
            }
        }
        if cfg.user.is_empty() {
            return Err(config_err(
                "connection string has no user: add user=NAME (or NAME@ in the URI)",
            ));
        }
        Ok(cfg)
    }

    /// The connection string in URI form with the password replaced by
    /// `********`: the only form that may be logged or returned by an API.
    pub fn masked(&self) -> String {
        self.uri(self.password.as_ref().map(|_| PASSWORD_MASK))
    }

    /// The complete connection string in URI form, password included: for
    /// storing the setting (in a file only its owner reads), never for logs.
    pub fn to_connstr(&self) -> String {
        self.uri(self.password.as_ref().map(|p| percent_encode(p)).as_deref())
    }

    fn uri(&self, password: Option<&str>) -> String {
        let mut s = String::from("postgresql://");
        s.push_str(&percent_encode(&self.user));
        if let Some(password) = password {
            s.push(':');
            s.push_str(password);
        }
        s.push('@');
        if self.host.contains(':') {
            s.push('[');
            s.push_str(&self.host);
            s.push(']');
        } else {
            s.push_str(&percent_encode(&self.host));
        }
        s.push(':');
        s.push_str(&self.port.to_string());
        if let Some(db) = &self.dbname {
            s.push('/');
            s.push_str(&percent_encode(db));
        }
        let mut sep = '?';
        if let Some(app) = &self.application_name {
            s.push(sep);
            s.push_str("application_name=");
            s.push_str(&percent_encode(app));
            sep = '&';
        }
        if self.connect_timeout != DEFAULT_CONNECT_TIMEOUT {
            s.push(sep);
            s.push_str("connect_timeout=");
            s.push_str(&self.connect_timeout.as_secs().max(1).to_string());
        }
        s
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn parse_host(value: &str) -> Result<String, ReplError> {
    if value.is_empty() {
        return Err(config_err("host must not be empty"));
    }
    if value.contains(',') {
        return Err(config_err(format!(
            "several hosts ({value}) are not supported: give exactly one host"
        )));
    }
    if value.starts_with('/') || value.starts_with('@') {
        return Err(config_err(format!(
            "Unix-domain socket host {value} is not supported: use a TCP host such as 127.0.0.1"
        )));
    }
    Ok(value.to_string())
}

fn parse_port(value: &str) -> Result<u16, ReplError> {
    match value.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(config_err(format!(
            "invalid port {value:?}: expected a number from 1 to 65535"
        ))),
    }
}

fn parse_connect_timeout(value: &str) -> Result<Duration, ReplError> {
    match value.parse::<u64>() {
        Ok(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(config_err(format!(
            "invalid connect_timeout {value:?}: expected a whole number of seconds greater than 0"
        ))),
    }
}

fn check_sslmode(value: &str) -> Result<(), ReplError> {
    match value {
        "disable" | "allow" | "prefer" => Ok(()),
        "require" | "verify-ca" | "verify-full" => Err(config_err(format!(
            "sslmode={value} is not supported: this client has no TLS; use sslmode=disable or prefer"
        ))),
        other => Err(config_err(format!(
            "invalid sslmode {other:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
        ))),
    }
}

/// Splits the part of a URI after `postgresql://` into keyword/value pairs.
fn parse_uri(rest: &str) -> Result<Vec<(String, String)>, ReplError> {
    let mut pairs = Vec::new();
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    // The last '@' separates user info from the host, so an unencoded '@' in a
    // password still parses as the user meant.
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            pairs.push(("user".to_string(), percent_decode(user, "user")?));
        }
        if let Some(p) = password {
            // Never echo the password itself in an error.
            pairs.push(("password".to_string(), percent_decode(p, "password")?));
        }
    }
    if !hostport.is_empty() {
        let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(|| {
                config_err(format!(
                    "unterminated IPv6 address in URI host {hostport:?}"
                ))
            })?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| {
                    config_err(format!("unexpected {p:?} after IPv6 address in URI"))
                })?),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (percent_decode(h, "host")?, Some(p)),
                None => (percent_decode(hostport, "host")?, None),
            }
        };
        if !host.is_empty() {
            pairs.push(("host".to_string(), host));
        }
        if let Some(port) = port.filter(|p| !p.is_empty()) {
            pairs.push(("port".to_string(), percent_decode(port, "port")?));
        }
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        pairs.push(("dbname".to_string(), percent_decode(path, "dbname")?));
    }
    if let Some(query) = query {
        for item in query.split('&').filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                config_err(format!(
                    "URI query parameter {:?} has no '=value'",
                    truncate_for_error(item)
                ))
            })?;
            let key = percent_decode(k, "parameter name")?;
            let value = percent_decode(v, &key)?;
            pairs.push((key, value));
        }
    }
    Ok(pairs)
}

fn truncate_for_error(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parses the `key = value key2 = 'quoted value'` form, with libpq's quoting:
/// single quotes around values that hold spaces, and backslash escapes.
fn parse_keyword_value(s: &str) -> Result<Vec<(String, String)>, ReplError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(config_err(format!(
                "missing \"=\" after {key:?} in connection string (expected key=value pairs or a postgresql:// URI)"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        // The value is reported by key only, so a malformed password never leaks.
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(config_err(format!(
                            "unterminated quoted value for {key:?} in connection string"
                        )))
                    }
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(config_err(format!(
                                "unterminated quoted value for {key:?} in connection string"
                            )))
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(config_err(format!(
                    "unexpected text after the quoted value of {key:?}: separate parameters with spaces"
                )));
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Decodes `%XX` escapes; `what` names the component for the error message.
fn percent_decode(s: &str, what: &str) -> Result<String, ReplError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    config_err(format!(
                        "invalid percent-encoding in the {what} part of the connection URI"
                    ))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        config_err(format!(
            "the {what} part of the connection URI is not valid UTF-8 after percent-decoding"
        ))
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod round_trip_tests {
    use super::*;

    #[test]
    fn to_connstr_round_trips_with_the_password() {
        for text in [
            "postgresql://u:p%40ss%2Fw@localhost:5433/db?application_name=x",
            "host=127.0.0.1 port=6000 user=rep password='se cret'",
            "postgresql://u@h",
        ] {
            let cfg = ConnConfig::parse(text).unwrap();
            let again = ConnConfig::parse(&cfg.to_connstr()).unwrap();
            assert_eq!(again.password, cfg.password, "{text}");
            assert_eq!(again.masked(), cfg.masked(), "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ConnConfig {
        ConnConfig::parse(s).unwrap_or_else(|e| panic!("parse {s:?}: {e}"))
    }

    fn parse_err(s: &str) -> String {
        match ConnConfig::parse(s) {
            Ok(c) => panic!("parse {s:?} should fail, got {c:?}"),
            Err(e) => {
                assert!(matches!(e, ReplError::Config(_)), "{e:?}");
                e.to_string()
            }
        }
    }

    #[test]
    fn uri_full() {
        let c = parse(
            "postgresql://repl:s3cret@db.example.com:5433/postgres?application_name=ps1&connect_timeout=5&sslmode=prefer",
        );
        assert_eq!(c.host, "db.example.com");
        assert_eq!(c.port, 5433);
        assert_eq!(c.user, "repl");
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.dbname.as_deref(), Some("postgres"));
        assert_eq!(c.application_name.as_deref(), Some("ps1"));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn uri_defaults_and_short_scheme() {
        let c = parse("postgres://u@h");
        assert_eq!((c.host.as_str(), c.port), ("h", DEFAULT_PORT));
        assert_eq!(c.password, None);
        assert_eq!(c.dbname, None);
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        let c = parse("postgresql://u@/?host=10.0.0.1&port=7");
        assert_eq!((c.host.as_str(), c.port), ("10.0.0.1", 7));
    }

    #[test]
    fn uri_percent_decoding() {
        let c = parse("postgresql://us%40er:p%40ss%3Aw%2Fo%25rd@127.0.0.1:5432/my%20db?application_name=a%26b");
        assert_eq!(c.user, "us@er");
        assert_eq!(c.password.as_deref(), Some("p@ss:w/o%rd"));
        assert_eq!(c.dbname.as_deref(), Some("my db"));
        assert_eq!(c.application_name.as_deref(), Some("a&b"));
        // Unencoded '@' in the password: the last '@' ends the user info.
        let c = parse("postgresql://u:a@b@h:1");
        assert_eq!(c.password.as_deref(), Some("a@b"));
        assert_eq!(c.host, "h");
        // Multi-byte UTF-8.
        let c = parse("postgresql://%C3%A9l%C3%A8ve@h");
        assert_eq!(c.user, "élève");
    }

    #[test]
    fn uri_ipv6() {
        let c = parse("postgresql://u@[::1]:6000/db");
        assert_eq!((c.host.as_str(), c.port), ("::1", 6000));
        assert_eq!(c.masked(), "postgresql://u@[::1]:6000/db");
        parse_err("postgresql://u@[::1:6000/db");
    }

    #[test]
    fn keyword_value_form() {
        let c = parse("host=h user=u dbname=postgres application_name=x sslmode=disable");
        assert_eq!(c.dbname.as_deref(), Some("postgres"));
        assert_eq!(c.application_name.as_deref(), Some("x"));
        // '' is not an escape in libpq: the quoted value ends at the second quote.
        assert!(ConnConfig::parse("password='a''b' user=u").is_err());
        let c = parse(
            r"host=127.0.0.1 port = 5444 user=repl password='it\'s a \\ pw' connect_timeout=3",
        );
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 5444);
        assert_eq!(c.user, "repl");
        assert_eq!(c.password.as_deref(), Some(r"it's a \ pw"));
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        let c = parse("user=u password=''  ");
        assert_eq!(c.password.as_deref(), Some(""));
        assert_eq!(c.host, DEFAULT_HOST);
    }

    #[test]
    fn unknown_parameters_are_named() {
        let e = parse_err("user=u foo=1 bar=2");
        assert!(e.contains("foo") && e.contains("bar"), "{e}");
        let e = parse_err("postgresql://u@h/db?options=-c%20x&replication=true");
        assert!(e.contains("options") && e.contains("replication"), "{e}");
    }

    #[test]
    fn bad_input() {
        parse_err("");
        parse_err("host=h"); // no user
        parse_err("user=u port=0");
        parse_err("user=u port=70000");
        parse_err("user=u port=abc");
        parse_err("user=u connect_timeout=0");
        parse_err("user=u connect_timeout=-1");
        parse_err("user=u host=/var/run/postgresql");
        parse_err("user=u host=a,b");
        parse_err("user=u password='unterminated");
        parse_err("user u");
        parse_err("mysql://u@h");
        parse_err("postgresql://u@h/db%G1");
        parse_err("postgresql://u@h/db%C3"); // truncated UTF-8
        parse_err("postgresql://u@h/db?application_name");
        parse_err("postgresql://u@h:99999");
        let e = parse_err("user=u sslmode=require");
        assert!(e.contains("sslmode=require") && e.contains("no TLS"), "{e}");
        parse_err("user=u sslmode=verify-full");
        parse_err("user=u sslmode=bogus");
    }

    #[test]
    fn errors_never_contain_the_password() {
        for s in [
            "postgresql://u:sup3rs3cret%zz@h",
            "user=u password='sup3rs3cret",
            "postgresql://u:sup3rs3cret@h:notaport",
            "user=u password=sup3rs3cret sslmode=require",
        ] {
            let e = parse_err(s);
            assert!(!e.contains("sup3rs3cret"), "{s:?} -> {e}");
        }
    }

    #[test]
    fn masking() {
        let c = parse("postgresql://repl:hunter2@h:5432/db?application_name=my%20app");
        let m = c.masked();
        assert_eq!(
            m,
            "postgresql://repl:********@h:5432/db?application_name=my%20app"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        // The masked form parses back to the same config, password aside.
        let back = parse(&m);
        assert_eq!(back.password.as_deref(), Some("********"));
        assert_eq!(
            ConnConfig {
                password: c.password.clone(),
                ..back
            },
            c
        );

        let c = parse("host=h user='a b' connect_timeout=7");
        assert_eq!(c.masked(), "postgresql://a%20b@h:5432?connect_timeout=7");
        assert_eq!(parse(&c.masked()), c);
    }
}
