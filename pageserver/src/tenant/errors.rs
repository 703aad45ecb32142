//! What can go wrong with tenant and timeline operations. The HTTP layer maps
//! each variant to a status code in one place (`http/error.rs`).

use utils::id::{TenantId, TimelineId};

/// Errors of tenant and timeline operations.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// No such tenant on this node.
    #[error("tenant {0} not found")]
    TenantNotFound(TenantId),
    /// Create of a tenant that exists.
    #[error("tenant {0} already exists")]
    TenantAlreadyExists(TenantId),
    /// Another create or delete of this tenant is under way.
    #[error("tenant {0} is being created or deleted; retry shortly")]
    TenantBusy(TenantId),
    /// The tenant is loading or stopping.
    #[error("tenant {tenant_id} is {state}, not Active; retry shortly")]
    TenantNotActive {
        /// The tenant.
        tenant_id: TenantId,
        /// Its state's name.
        state: &'static str,
    },
    /// The tenant cannot serve.
    #[error("tenant {tenant_id} is Broken: {reason}; delete it or fix the cause and restart")]
    TenantBroken {
        /// The tenant.
        tenant_id: TenantId,
        /// Why.
        reason: String,
    },
    /// The tenant is held here as a secondary location (a warm cache).
    #[error("tenant {0} is a secondary location on this node: it keeps a warm cache of layers and serves no reads or changes; use the attached node, or attach it here with location_config AttachedSingle")]
    TenantIsSecondary(TenantId),
    /// The tenant is held here in another mode than the operation needs.
    #[error("{0}")]
    WrongMode(String),
    /// No such timeline in the tenant.
    #[error("timeline {1} not found in tenant {0}")]
    TimelineNotFound(TenantId, TimelineId),
    /// Create of a timeline that exists or is being created.
    #[error("timeline {1} already exists in tenant {0}")]
    TimelineAlreadyExists(TenantId, TimelineId),
    /// A delete of this timeline is under way.
    #[error("timeline {1} of tenant {0} is being deleted; retry shortly")]
    TimelineBusy(TenantId, TimelineId),
    /// The timeline is not Active.
    #[error("timeline {timeline_id} of tenant {tenant_id} is {state}: {detail}")]
    TimelineNotActive {
        /// The tenant.
        tenant_id: TenantId,
        /// The timeline.
        timeline_id: TimelineId,
        /// Its state's name.
        state: &'static str,
        /// Broken reason or what to do.
        detail: String,
    },
    /// Delete of a timeline that has branches.
    #[error("timeline {timeline_id} has child timelines {children:?}; delete them first")]
    TimelineHasChildren {
        /// The timeline.
        timeline_id: TimelineId,
        /// Its branches.
        children: Vec<TimelineId>,
    },
    /// The request is invalid (bad LSN, unknown ancestor, bad config value).
    #[error("{0}")]
    BadRequest(String),
    /// The node is shutting down.
    #[error("page server is shutting down")]
    ShuttingDown,
    /// Attach of a tenant that has nothing in remote storage.
    #[error("tenant {0} has no data in remote storage (no tenant manifest and no timeline index): nothing to attach; check the tenant id and the node's remote_storage config")]
    NoRemoteData(TenantId),
    /// Something this operation waits on is failing (object storage, an
    /// upload queue that does not drain); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A local file operation failed.
    #[error("{0}")]
    Internal(#[from] anyhow::Error),
}
