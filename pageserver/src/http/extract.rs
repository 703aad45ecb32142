//! Request extractors whose failures are [`ApiError`]s with `{"msg"}` bodies:
//! typed path parameters, query flags, and JSON bodies read under the
//! configured size cap.

use std::collections::HashMap;
use std::str::FromStr;

use axum::extract::{FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

/// The route's path parameters by name.
pub struct PathParams(HashMap<String, String>);

impl PathParams {
    /// Parses parameter `name` (e.g. `tenant_id`), naming it in the error.
    pub fn parse<T>(&self, name: &str) -> Result<T, ApiError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let raw = self
            .0
            .get(name)
            .ok_or_else(|| ApiError::BadRequest(format!("missing path parameter {name}")))?;
        raw.parse()
            .map_err(|e| ApiError::BadRequest(format!("invalid {name} {raw:?} in path: {e}")))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))?;
        Ok(PathParams(
            raw.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }
}

/// The query string's parameters.
pub struct QueryParams(HashMap<String, String>);

impl QueryParams {
    /// Parses required query parameter `name`, naming it in the error.
    pub fn parse<T>(&self, name: &str) -> Result<T, ApiError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let raw = self
            .0
            .get(name)
            .ok_or_else(|| ApiError::BadRequest(format!("missing query parameter {name}")))?;
        raw.parse().map_err(|e| {
            ApiError::BadRequest(format!("invalid query parameter {name} {raw:?}: {e}"))
        })
    }

    /// Parses optional query parameter `name`: `None` when absent.
    pub fn optional<T>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        if self.0.contains_key(name) {
            self.parse(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A boolean flag: absent is false; `true`/`false` (or empty, meaning
    /// true) otherwise; anything else is a 400 naming the parameter.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.0.get(name).map(String::as_str) {
            None | Some("false") => Ok(false),
            Some("true") | Some("") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "query parameter {name} must be true or false, got {other:?}"
            ))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))
    }
}

/// A JSON body, read only up to `max_request_body_bytes` (413 beyond) and
/// parsed strictly (400 with serde's message, which names the field).
/// An empty body reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let cap = state.conf.max_request_body_bytes;
        let limit = usize::try_from(cap).unwrap_or(usize::MAX);
        let bytes = Limited::new(req.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    ApiError::PayloadTooLarge(format!("request body is larger than {cap} bytes"))
                } else {
                    ApiError::BadRequest(format!("cannot read request body: {e}"))
                }
            })?
            .to_bytes();
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                ApiError::BadRequest(format!("malformed request body: {}", e.inner()))
            } else {
                ApiError::BadRequest(format!("malformed request body: {path}: {}", e.inner()))
            }
        })?;
        de.end()
            .map_err(|e| ApiError::BadRequest(format!("malformed request body: {e}")))?;
        Ok(JsonBody(value))
    }
}
