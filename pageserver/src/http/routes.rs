//! The route table: every route with its method, path (as the OpenAPI
//! document writes it) and declared [`Access`]. The router, the access
//! check and the OpenAPI test are all built from this one list.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};

use super::access::Access;
use super::{
    basebackup, handlers, location, lsn_time, node, secondary, sizes, timeline_ops, AppState,
};

/// One route of the HTTP API.
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path template as in the OpenAPI document (`{tenant_id}` parameters).
    pub path: &'static str,
    /// What the caller must prove.
    pub access: Access,
    /// The handler.
    pub handler: MethodRouter<AppState>,
}

fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("standard HTTP method");
    Route {
        method,
        path,
        access,
        handler: on(filter, handler),
    }
}

/// Every route of the API.
pub fn routes() -> Vec<Route> {
    use Access::*;
    #[cfg_attr(not(feature = "testing"), allow(unused_mut))]
    let mut routes = vec![
        route(Method::GET, "/v1/status", Public, node::status),
        route(Method::GET, "/health", Public, node::health),
        route(Method::GET, "/liveness", Public, node::liveness),
        route(Method::GET, "/readiness", Public, node::readiness),
        route(Method::GET, "/metrics", Public, node::metrics),
        route(Method::GET, "/v1/tenant/", Node, handlers::tenant_list),
        route(Method::POST, "/v1/tenant/", Node, handlers::tenant_create),
        route(
            Method::PUT,
            "/v1/tenant/config",
            Node,
            handlers::tenant_config_put,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}",
            Tenant,
            handlers::tenant_get,
        ),
        route(
            Method::DELETE,
            "/v1/tenant/{tenant_id}",
            Node,
            handlers::tenant_delete,
        ),
        route(
            Method::POST,
            "/v1/tenant/{tenant_id}/attach",
            Node,
            location::attach,
        ),
        route(
            Method::POST,
            "/v1/tenant/{tenant_id}/detach",
            Node,
            location::detach,
        ),
        route(
            Method::PUT,
            "/v1/tenant/{tenant_id}/location_config",
            Node,
            location::location_config,
        ),
        route(
            Method::POST,
            "/v1/tenant/{tenant_id}/secondary/download",
            Node,
            secondary::download,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/secondary/status",
            Node,
            secondary::status,
        ),
        route(
            Method::POST,
            "/v1/tenant/{tenant_id}/heatmap_upload",
            Node,
            secondary::heatmap_upload,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/config",
            Tenant,
            handlers::tenant_config_get,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/timeline",
            Tenant,
            handlers::timeline_list,
        ),
        route(
            Method::POST,
            "/v1/tenant/{tenant_id}/timeline/",
            Tenant,
            handlers::timeline_create,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}",
            Tenant,
            handlers::timeline_get,
        ),
        route(
            Method::DELETE,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}",
            Tenant,
            handlers::timeline_delete,
        ),
        route(
            Method::PUT,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/checkpoint",
            Node,
            timeline_ops::checkpoint,
        ),
        route(
            Method::PUT,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/compact",
            Node,
            timeline_ops::compact,
        ),
        route(
            Method::PUT,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/do_gc",
            Node,
            timeline_ops::do_gc,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/basebackup",
            Tenant,
            basebackup::basebackup,
        ),
        route(
            Method::PUT,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/wal_source",
            Tenant,
            timeline_ops::set_wal_source,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/get_lsn_by_timestamp",
            Tenant,
            lsn_time::get_lsn_by_timestamp,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/get_timestamp_of_lsn",
            Tenant,
            lsn_time::get_timestamp_of_lsn,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/size",
            Tenant,
            sizes::tenant_size,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/synthetic_size",
            Tenant,
            sizes::synthetic_size,
        ),
    ];
    #[cfg(feature = "testing")]
    routes.extend([
        route(Method::PUT, "/v1/failpoints", Node, node::failpoints),
        route(
            Method::PUT,
            "/v1/remote_storage/faults",
            Node,
            location::set_faults,
        ),
        route(
            Method::PUT,
            "/v1/testing/disk_usage",
            Node,
            location::set_disk_usage,
        ),
        route(
            Method::PUT,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/evict",
            Node,
            location::evict,
        ),
        route(
            Method::PUT,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/test/values",
            Node,
            timeline_ops::test_put,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/test/value",
            Node,
            timeline_ops::test_get,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/test/relation",
            Node,
            timeline_ops::test_relation,
        ),
        route(
            Method::GET,
            "/v1/tenant/{tenant_id}/timeline/{timeline_id}/test/compare_relation",
            Node,
            timeline_ops::test_compare_relation,
        ),
    ]);
    routes
}

/// The path and its twin with the trailing slash toggled: seed 004 writes
/// some collection paths with a trailing slash, and clients send both forms.
pub fn path_variants(path: &str) -> Vec<String> {
    if path == "/" {
        return vec![path.to_string()];
    }
    let twin = match path.strip_suffix('/') {
        Some(stripped) => stripped.to_string(),
        None => format!("{path}/"),
    };
    vec![path.to_string(), twin]
}
