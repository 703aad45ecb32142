//! Types that cross the page server's process boundary (DESIGN.md section 2):
//! HTTP request and response bodies, shared by the server, `cplane` and other
//! clients. Serialization follows the OpenAPI document in
//! `pageserver/src/http/openapi_spec.yml`.
#![deny(missing_docs)]

pub mod commit_ts;
pub mod key;
pub mod models;
pub mod tenant_config;
pub mod value;
