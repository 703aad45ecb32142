//! The local environment: a directory (default `.cplane`) holding the
//! cluster's settings (`cplane.toml`), the JWT key pair and one work
//! directory per page server.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use utils::auth::{Claims, Scope};
use utils::crashsafe;
use utils::id::TenantId;

/// File name of the environment's settings.
pub const ENV_FILE: &str = "cplane.toml";
const PRIVATE_KEY_FILE: &str = "auth_private_key.pem";
const PUBLIC_KEY_FILE: &str = "auth_public_key.pem";

/// One page server of the environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageServerSettings {
    /// Node id.
    pub id: u64,
    /// HTTP API address.
    pub listen_http_addr: String,
    /// Page service address.
    pub listen_pg_addr: String,
}

fn default_pg_distrib_dir() -> PathBuf {
    PathBuf::from("/usr/lib/postgresql/15")
}

/// Settings of the whole environment, stored in `cplane.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalEnv {
    /// Whether the page servers require JWTs (HTTP and page service).
    pub auth: bool,
    /// Directory holding the `pageserver` binary.
    pub bin_dir: PathBuf,
    /// The page servers.
    pub pageservers: Vec<PageServerSettings>,
    /// PostgreSQL 15 installation that computes run from.
    #[serde(default = "default_pg_distrib_dir")]
    pub pg_distrib_dir: PathBuf,
    /// Directory of this environment (not stored; filled on load).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl LocalEnv {
    /// A new environment description with `count` page servers on
    /// consecutive ports from `first_ports` (HTTP, page service).
    pub fn new(
        base_dir: PathBuf,
        bin_dir: PathBuf,
        count: u64,
        first_ports: (u16, u16),
        auth: bool,
    ) -> LocalEnv {
        let pageservers = (0..count)
            .map(|i| PageServerSettings {
                id: i + 1,
                listen_http_addr: format!("127.0.0.1:{}", u64::from(first_ports.0) + i),
                listen_pg_addr: format!("127.0.0.1:{}", u64::from(first_ports.1) + i),
            })
            .collect();
        LocalEnv {
            auth,
            bin_dir,
            pageservers,
            pg_distrib_dir: default_pg_distrib_dir(),
            base_dir,
        }
    }

    /// Loads the environment in `base_dir`.
    pub fn load(base_dir: &Path) -> anyhow::Result<LocalEnv> {
        let path = base_dir.join(ENV_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}; run `cplane init` first", path.display()))?;
        let mut env: LocalEnv =
            toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
        env.base_dir = base_dir.to_path_buf();
        Ok(env)
    }

    /// Creates the directory, the key pair and `cplane.toml`. Refuses an
    /// existing environment so that keys and data are never overwritten.
    pub fn create(&self) -> anyhow::Result<()> {
        if self.base_dir.join(ENV_FILE).exists() {
            bail!(
                "{} already holds an environment; remove it or pick another --workdir",
                self.base_dir.display()
            );
        }
        crashsafe::create_dir_all(&self.base_dir)?;
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let private = key
            .to_pkcs8_pem(LineEnding::LF)
            .context("cannot encode the private key")?;
        let public = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .context("cannot encode the public key")?;
        crashsafe::overwrite(&self.base_dir.join(PRIVATE_KEY_FILE), private.as_bytes())?;
        crashsafe::overwrite(&self.base_dir.join(PUBLIC_KEY_FILE), public.as_bytes())?;
        let text = toml::to_string_pretty(self)?;
        crashsafe::overwrite(&self.base_dir.join(ENV_FILE), text.as_bytes())?;
        Ok(())
    }

    /// Path of the public key the page servers validate tokens with.
    pub fn public_key_path(&self) -> PathBuf {
        self.base_dir.join(PUBLIC_KEY_FILE)
    }

    /// Work directory of page server `id`.
    pub fn pageserver_dir(&self, id: u64) -> PathBuf {
        self.base_dir.join(format!("pageserver_{id}"))
    }

    /// The page server with `id`.
    pub fn pageserver(&self, id: u64) -> anyhow::Result<&PageServerSettings> {
        self.pageservers
            .iter()
            .find(|p| p.id == id)
            .with_context(|| format!("no page server with id {id} in this environment"))
    }

    /// A token for `scope` (and `tenant_id` for the tenant scope), signed
    /// with the environment's private key.
    pub fn token(&self, scope: Scope, tenant_id: Option<TenantId>) -> anyhow::Result<String> {
        let pem = std::fs::read(self.base_dir.join(PRIVATE_KEY_FILE))
            .context("cannot read the environment's private key")?;
        utils::auth::encode(&Claims::new(scope, tenant_id), &pem)
    }

    /// The token page server calls carry: a `pageserverapi` token when auth
    /// is on, none otherwise.
    pub fn admin_token(&self) -> anyhow::Result<Option<String>> {
        if self.auth {
            Ok(Some(self.token(Scope::PageServerApi, None)?))
        } else {
            Ok(None)
        }
    }
}
