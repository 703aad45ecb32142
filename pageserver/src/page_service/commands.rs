//! Commands of the page service: parsing of the simple-query text, the
//! permission check, and the dispatcher.
//!
//! **Adding a command** (as `basebackup`, `import basebackup`, `import wal`
//! in `copy_commands.rs` were):
//! add a variant to [`Command`] with its parsed arguments, a branch in
//! [`Command::parse`], its tenant in [`Command::tenant_id`], a line in
//! [`KNOWN_COMMANDS`], and one arm in [`dispatch`] calling
//!
//! ```text
//! async fn handle_x(conn: &mut PgConn, args: XArgs, env: &CommandEnv<'_>)
//!     -> Result<Flow, PageServiceError>
//! ```
//!
//! The handler gets the connection (for COPY it calls `conn.copy_out()` /
//! `conn.copy_in()` to get the `AsyncWrite` / `AsyncRead` adapters), its
//! arguments, and the tenant manager, configuration and cancellation token
//! through [`CommandEnv`]. Permission is checked before the handler runs.
//! The handler writes its own result messages (e.g. CommandComplete); the
//! dispatcher's caller sends ReadyForQuery. A
//! [`PageServiceError::Command`] returned before the handler wrote anything
//! becomes an ErrorResponse and the session goes on.

use std::sync::Arc;

use pq_proto::{SQLSTATE_INSUFFICIENT_PRIVILEGE, SQLSTATE_SYNTAX_ERROR};
use tokio_util::sync::CancellationToken;
use utils::auth::{check_permission, Claims};
use utils::id::{TenantId, TimelineId};

use super::connection::PgConn;
use super::copy_commands::{self, BasebackupArgs, ImportArgs};
use super::{pagestream, PageServiceError};
use crate::config::PageServerConf;
use crate::tenant::mgr::TenantManager;

/// The commands the page service knows, as shown to clients that send an
/// unknown one.
pub const KNOWN_COMMANDS: &[&str] = &[
    "pagestream_v2 TENANT_ID TIMELINE_ID",
    "basebackup TENANT_ID TIMELINE_ID [LSN] [--gzip]",
    "import basebackup TENANT_ID TIMELINE_ID START_LSN END_LSN",
    "import wal TENANT_ID TIMELINE_ID START_LSN END_LSN",
];

/// What a command handler gets besides the connection and its arguments.
pub struct CommandEnv<'a> {
    /// The node's configuration (timeouts, pipeline depth).
    pub conf: &'a Arc<PageServerConf>,
    /// The node's tenants.
    pub tenants: &'a Arc<TenantManager>,
    /// The client's JWT claims, when authentication is on.
    pub claims: Option<&'a Claims>,
    /// Fires when the node shuts down; long handlers must watch it.
    pub cancel: &'a CancellationToken,
}

/// What the session does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Send ReadyForQuery and read the next query.
    Continue,
    /// The client sent Terminate: close the connection.
    Close,
}

/// Arguments naming one timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineArgs {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The timeline.
    pub timeline_id: TimelineId,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `pagestream_v2 TENANT TIMELINE`: pipelined page requests (CopyBoth).
    PagestreamV2(TimelineArgs),
    /// `basebackup TENANT TIMELINE [LSN] [--gzip]`: the tar (CopyOut).
    Basebackup(BasebackupArgs),
    /// `import basebackup TENANT TIMELINE START END`: a tar (CopyIn).
    ImportBasebackup(ImportArgs),
    /// `import wal TENANT TIMELINE START END`: WAL (CopyIn).
    ImportWal(ImportArgs),
}

fn syntax(message: String) -> PageServiceError {
    PageServiceError::command(SQLSTATE_SYNTAX_ERROR, "command", message)
}

fn parse_timeline_args(name: &str, args: &[&str]) -> Result<TimelineArgs, PageServiceError> {
    let [tenant, timeline] = args else {
        return Err(syntax(format!(
            "{name} takes 2 arguments (TENANT_ID TIMELINE_ID), got {}",
            args.len()
        )));
    };
    let tenant_id = tenant
        .parse()
        .map_err(|e| syntax(format!("{name}: invalid tenant id {tenant:?}: {e}")))?;
    let timeline_id = timeline
        .parse()
        .map_err(|e| syntax(format!("{name}: invalid timeline id {timeline:?}: {e}")))?;
    Ok(TimelineArgs {
        tenant_id,
        timeline_id,
    })
}

impl Command {
    /// Parses a query string. Words are separated by whitespace; a trailing
    /// `;` is ignored; the command name is case-insensitive.
    pub fn parse(query: &str) -> Result<Command, PageServiceError> {
        let query = query.trim().trim_end_matches(';').trim_end();
        let words: Vec<&str> = query.split_whitespace().collect();
        let Some((name, args)) = words.split_first() else {
            return Err(syntax(format!(
                "empty command; known commands: {}",
                KNOWN_COMMANDS.join(", ")
            )));
        };
        match name.to_ascii_lowercase().as_str() {
            "pagestream_v2" => Ok(Command::PagestreamV2(parse_timeline_args(
                "pagestream_v2",
                args,
            )?)),
            "basebackup" => Ok(Command::Basebackup(BasebackupArgs::parse(args, |a| {
                parse_timeline_args("basebackup", a)
            })?)),
            "import" => match args.split_first() {
                Some((kind, rest)) if kind.eq_ignore_ascii_case("basebackup") => Ok(
                    Command::ImportBasebackup(ImportArgs::parse("basebackup", rest, |a| {
                        parse_timeline_args("import basebackup", a)
                    })?),
                ),
                Some((kind, rest)) if kind.eq_ignore_ascii_case("wal") => {
                    Ok(Command::ImportWal(ImportArgs::parse("wal", rest, |a| {
                        parse_timeline_args("import wal", a)
                    })?))
                }
                _ => Err(syntax(
                    "import takes `basebackup` or `wal` and then TENANT_ID TIMELINE_ID START_LSN END_LSN".to_string(),
                )),
            },
            _ => {
                let shown: String = name.chars().take(64).collect();
                Err(syntax(format!(
                    "unknown command {shown:?}; known commands: {}",
                    KNOWN_COMMANDS.join(", ")
                )))
            }
        }
    }

    /// The tenant the command acts on (checked against the claims).
    pub fn tenant_id(&self) -> TenantId {
        match self {
            Command::PagestreamV2(a) => a.tenant_id,
            Command::Basebackup(a) => a.timeline.tenant_id,
            Command::ImportBasebackup(a) | Command::ImportWal(a) => a.timeline.tenant_id,
        }
    }
}

/// The timeline a command names, of an active tenant.
pub fn active_timeline(
    env: &CommandEnv<'_>,
    args: TimelineArgs,
) -> Result<Arc<crate::tenant::timeline::Timeline>, PageServiceError> {
    let tenant = env.tenants.get(args.tenant_id)?;
    tenant.check_active()?;
    Ok(tenant.get_timeline(args.timeline_id)?)
}

/// Refuses a command whose tenant the claims do not cover (SQLSTATE 42501).
fn authorize(claims: Option<&Claims>, tenant_id: TenantId) -> Result<(), PageServiceError> {
    match claims {
        None => Ok(()),
        Some(c) => check_permission(c, Some(tenant_id)).map_err(|e| {
            PageServiceError::command(
                SQLSTATE_INSUFFICIENT_PRIVILEGE,
                "permission",
                format!("permission denied for tenant {tenant_id}: {e}"),
            )
        }),
    }
}

/// Parses, authorizes and runs one query.
pub async fn dispatch(
    conn: &mut PgConn,
    query: &str,
    env: &CommandEnv<'_>,
) -> Result<Flow, PageServiceError> {
    let command = Command::parse(query)?;
    authorize(env.claims, command.tenant_id())?;
    match command {
        Command::PagestreamV2(args) => {
            let span = tracing::info_span!("pagestream", tenant_id = %args.tenant_id, timeline_id = %args.timeline_id);
            tracing::Instrument::instrument(pagestream::handle_pagestream(conn, args, env), span)
                .await
        }
        Command::Basebackup(args) => {
            let span = tracing::info_span!("basebackup", tenant_id = %args.timeline.tenant_id, timeline_id = %args.timeline.timeline_id);
            tracing::Instrument::instrument(copy_commands::handle_basebackup(conn, args, env), span)
                .await
        }
        Command::ImportBasebackup(args) => {
            let span = tracing::info_span!("import_basebackup", tenant_id = %args.timeline.tenant_id, timeline_id = %args.timeline.timeline_id);
            tracing::Instrument::instrument(
                copy_commands::handle_import_basebackup(conn, args, env),
                span,
            )
            .await
        }
        Command::ImportWal(args) => {
            let span = tracing::info_span!("import_wal", tenant_id = %args.timeline.tenant_id, timeline_id = %args.timeline.timeline_id);
            tracing::Instrument::instrument(copy_commands::handle_import_wal(conn, args, env), span)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utils::auth::Scope;

    const T: &str = "11223344556677881122334455667788";
    const TL: &str = "aabbccddeeff00112233445566778899";

    fn code_of(e: PageServiceError) -> &'static str {
        match e {
            PageServiceError::Command { code, .. } => code,
            other => panic!("not a command error: {other}"),
        }
    }

    #[test]
    fn parses_pagestream() {
        let c = Command::parse(&format!("pagestream_v2 {T} {TL}")).unwrap();
        let Command::PagestreamV2(a) = &c else {
            panic!("not pagestream: {c:?}")
        };
        assert_eq!(a.tenant_id.to_string(), T);
        assert_eq!(a.timeline_id.to_string(), TL);
        assert_eq!(
            Command::parse(&format!("  PAGESTREAM_V2   {T}\t{TL} ; ")).unwrap(),
            c
        );
    }

    #[test]
    fn bad_commands_name_the_problem() {
        for (q, want) in [
            ("", "empty command"),
            ("select 1", "unknown command \"select\""),
            ("basebackup", "basebackup takes"),
            ("import", "import takes"),
            ("import snapshot a b c d", "import takes"),
            ("pagestream_v2", "takes 2 arguments"),
            (&format!("pagestream_v2 {T}"), "takes 2 arguments"),
            (&format!("pagestream_v2 {T} {TL} x"), "takes 2 arguments"),
            (&format!("pagestream_v2 nope {TL}"), "invalid tenant id"),
            (&format!("pagestream_v2 {T} zz"), "invalid timeline id"),
        ] {
            let e = Command::parse(q).unwrap_err();
            assert!(e.to_string().contains(want), "{q:?}: {e}");
            assert_eq!(code_of(e), SQLSTATE_SYNTAX_ERROR);
        }
    }

    #[test]
    fn permission_follows_the_claims() {
        let t: TenantId = T.parse().unwrap();
        let other = TenantId::generate();
        assert!(authorize(None, t).is_ok());
        let own = Claims::new(Scope::Tenant, Some(t));
        assert!(authorize(Some(&own), t).is_ok());
        let e = authorize(Some(&own), other).unwrap_err();
        assert!(e.to_string().contains(&other.to_string()), "{e}");
        assert_eq!(code_of(e), SQLSTATE_INSUFFICIENT_PRIVILEGE);
        let admin = Claims::new(Scope::PageServerApi, None);
        assert!(authorize(Some(&admin), other).is_ok());
        let gens = Claims::new(Scope::GenerationsApi, None);
        assert_eq!(
            code_of(authorize(Some(&gens), t).unwrap_err()),
            SQLSTATE_INSUFFICIENT_PRIVILEGE
        );
    }
}
