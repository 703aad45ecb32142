//! JWT authentication with EdDSA (Ed25519) keys (DESIGN.md section 5).
//!
//! Tokens are signed by the control plane with a private key; nodes hold only
//! public keys and validate signatures, expiry and scope. A token's [`Claims`]
//! say what it may reach: one tenant ([`Scope::Tenant`]), the whole node
//! ([`Scope::PageServerApi`]) or the controller upcalls
//! ([`Scope::GenerationsApi`]).

use std::fs;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::id::TenantId;

/// What a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One tenant's data and timelines; the claims carry the `tenant_id`.
    Tenant,
    /// Every operation on a page server.
    #[serde(rename = "pageserverapi")]
    PageServerApi,
    /// The storage controller's generation upcalls.
    #[serde(rename = "generations_api")]
    GenerationsApi,
}

/// The payload of our JWTs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// What the token grants.
    pub scope: Scope,
    /// The tenant a [`Scope::Tenant`] token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    /// Expiry, seconds since the Unix epoch. Checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

impl Claims {
    /// Claims for a token of `scope`, for `tenant_id` when the scope is a tenant.
    pub fn new(scope: Scope, tenant_id: Option<TenantId>) -> Self {
        Claims {
            scope,
            tenant_id,
            exp: None,
        }
    }
}

/// Why a token was refused. [`AuthError::is_forbidden`] separates "who are
/// you" (401) from "you may not" (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("missing authorization token: send 'Authorization: Bearer <JWT>'")]
    Missing,
    /// The token could not be read or its signature does not verify.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token has expired.
    #[error("token has expired")]
    Expired,
    /// The token is valid but does not grant this operation.
    #[error("{0}")]
    Forbidden(String),
}

impl AuthError {
    /// True when the caller is known but not allowed (HTTP 403).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::Forbidden(_))
    }
}

/// Validates tokens against a set of public keys.
pub struct JwtAuth {
    keys: Vec<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl JwtAuth {
    /// Loads Ed25519 public keys in PEM form from `path`: one file, or every
    /// file of a directory (so keys can be rotated by adding a file).
    pub fn from_key_path(path: &Path) -> anyhow::Result<Self> {
        let mut files = Vec::new();
        if path.is_dir() {
            for entry in fs::read_dir(path)? {
                let p = entry?.path();
                if p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut keys = Vec::new();
        for file in &files {
            let pem = fs::read(file)
                .map_err(|e| anyhow::anyhow!("cannot read public key {}: {e}", file.display()))?;
            let key = DecodingKey::from_ed_pem(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not an Ed25519 public key in PEM form: {e}",
                    file.display()
                )
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            anyhow::bail!("no public keys found in {}", path.display());
        }
        Ok(Self::new(keys))
    }

    /// A validator over already loaded keys.
    pub fn new(keys: Vec<DecodingKey>) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.leeway = 0;
        JwtAuth { keys, validation }
    }

    /// Checks the signature and expiry of `token` and returns its claims.
    pub fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let mut last = AuthError::Invalid("no keys configured".to_string());
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                            return Err(AuthError::Expired)
                        }
                        _ => AuthError::Invalid(e.to_string()),
                    }
                }
            }
        }
        Err(last)
    }
}

/// Signs `claims` with an Ed25519 private key in PKCS#8 PEM form.
pub fn encode(claims: &Claims, private_key_pem: &[u8]) -> anyhow::Result<String> {
    let key = EncodingKey::from_ed_pem(private_key_pem)?;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        claims,
        &key,
    )?)
}

/// Decides whether `claims` may act on `tenant_id` (or, with `None`, on the
/// whole node).
pub fn check_permission(claims: &Claims, tenant_id: Option<TenantId>) -> Result<(), AuthError> {
    match (claims.scope, tenant_id) {
        (Scope::PageServerApi, _) => Ok(()),
        (Scope::Tenant, Some(wanted)) => match claims.tenant_id {
            Some(have) if have == wanted => Ok(()),
            Some(have) => Err(AuthError::Forbidden(format!(
                "token is for tenant {have}, not tenant {wanted}"
            ))),
            None => Err(AuthError::Forbidden(
                "tenant-scoped token carries no tenant_id".to_string(),
            )),
        },
        (Scope::Tenant, None) => Err(AuthError::Forbidden(
            "this operation needs a token with scope 'pageserverapi'; a tenant token was given"
                .to_string(),
        )),
        (Scope::GenerationsApi, _) => Err(AuthError::Forbidden(
            "a 'generations_api' token may only call the controller upcalls".to_string(),
        )),
    }
}

/// Extracts the token from an `Authorization: Bearer <token>` header value.
pub fn parse_bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let (kind, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| AuthError::Invalid("Authorization header must be 'Bearer <JWT>'".into()))?;
    if !kind.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Invalid(
            "Authorization header must be 'Bearer <JWT>'".into(),
        ));
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use ed25519_dalek::SigningKey;

    fn keypair(seed: u8) -> (Vec<u8>, DecodingKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let private = sk.to_pkcs8_pem(Default::default()).unwrap();
        let public = sk
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        (
            private.as_bytes().to_vec(),
            DecodingKey::from_ed_pem(public.as_bytes()).unwrap(),
        )
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn round_trip_and_rejections() {
        let (private, public) = keypair(1);
        let (other_private, _) = keypair(2);
        let auth = JwtAuth::new(vec![public]);
        let tenant = TenantId::generate();
        let claims = Claims::new(Scope::Tenant, Some(tenant));
        let token = encode(&claims, &private).unwrap();
        assert_eq!(auth.decode(&token).unwrap(), claims);

        let forged = encode(&claims, &other_private).unwrap();
        assert!(matches!(auth.decode(&forged), Err(AuthError::Invalid(_))));
        assert!(matches!(auth.decode("garbage"), Err(AuthError::Invalid(_))));

        let mut expired = Claims::new(Scope::PageServerApi, None);
        expired.exp = Some(now() - 10);
        let token = encode(&expired, &private).unwrap();
        assert_eq!(auth.decode(&token), Err(AuthError::Expired));

        let mut fresh = Claims::new(Scope::PageServerApi, None);
        fresh.exp = Some(now() + 3600);
        let token = encode(&fresh, &private).unwrap();
        assert_eq!(auth.decode(&token).unwrap(), fresh);
    }

    #[test]
    fn permissions() {
        let t1 = TenantId::generate();
        let t2 = TenantId::generate();
        let admin = Claims::new(Scope::PageServerApi, None);
        let tenant = Claims::new(Scope::Tenant, Some(t1));
        let gens = Claims::new(Scope::GenerationsApi, None);
        assert!(check_permission(&admin, None).is_ok());
        assert!(check_permission(&admin, Some(t2)).is_ok());
        assert!(check_permission(&tenant, Some(t1)).is_ok());
        assert!(check_permission(&tenant, Some(t2))
            .unwrap_err()
            .is_forbidden());
        assert!(check_permission(&tenant, None).unwrap_err().is_forbidden());
        assert!(check_permission(&gens, Some(t1))
            .unwrap_err()
            .is_forbidden());
    }

    #[test]
    fn bearer_header() {
        assert_eq!(parse_bearer(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(parse_bearer(Some("bearer  abc ")).unwrap(), "abc");
        assert_eq!(parse_bearer(None), Err(AuthError::Missing));
        assert!(parse_bearer(Some("Basic abc")).is_err());
        assert!(parse_bearer(Some("Bearer")).is_err());
    }
}
