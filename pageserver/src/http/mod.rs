//! The HTTP API (DESIGN.md section 5): the route table (`routes.rs`), access
//! checks (`access.rs`), one error mapping (`error.rs`), extractors with size
//! caps (`extract.rs`) and the handlers.

pub mod access;
pub mod basebackup;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod location;
pub mod lsn_time;
pub mod node;
pub mod routes;
pub mod secondary;
pub mod size_svg;
pub mod sizes;
pub mod timeline_ops;

#[cfg(test)]
mod openapi_tests;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::Method;
use axum::Router;
use utils::auth::JwtAuth;

use crate::background::{Heartbeats, NodeHealth};
use crate::config::PageServerConf;
use crate::tenant::mgr::TenantManager;
use access::Access;
use error::ApiError;

/// Everything handlers need.
#[derive(Clone)]
pub struct AppState {
    /// Node configuration.
    pub conf: Arc<PageServerConf>,
    /// The tenants.
    pub tenants: Arc<TenantManager>,
    /// Token validation when `http_auth_type = "JWT"`.
    pub auth: Option<Arc<JwtAuth>>,
    /// Readiness inputs.
    pub health: Arc<NodeHealth>,
    /// Liveness inputs.
    pub heartbeats: Arc<Heartbeats>,
    /// Declared access of every registered (method, path template).
    pub access: Arc<HashMap<(Method, String), Access>>,
}

/// Builds the router from the route table. `state.access` is filled here.
pub fn router(mut state: AppState) -> Router {
    let mut router = Router::new();
    let mut access = HashMap::new();
    for r in routes::routes() {
        for path in routes::path_variants(r.path) {
            router = router.route(&path, r.handler.clone());
            access.insert((r.method.clone(), path), r.access);
        }
    }
    state.access = Arc::new(access);
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::check_access,
        ))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::NotFound(format!("no route for {}", uri.path()))
        })
        .method_not_allowed_fallback(|method: Method, uri: axum::http::Uri| async move {
            ApiError::MethodNotAllowed(format!("method {method} is not allowed on {}", uri.path()))
        })
        .layer(axum::middleware::from_fn(access::observe))
        .with_state(state)
}
