//! Types that cross the page server's process boundary (DESIGN.md section 2):
//! HTTP request and response bodies and the `pagestream_v2` messages, shared
//! by the server, `cplane`, the benchmark tool and other
//! clients. Serialization follows the OpenAPI document in
//! `pageserver/src/http/openapi_spec.yml`.
#![deny(missing_docs)]

pub mod commit_ts;
pub mod key;
pub mod models;
pub mod pagestream;
pub mod tenant_config;
pub mod value;
