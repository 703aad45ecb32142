//! Per-tenant settings: what a tenant may override of the node's defaults.
//!
//! Every field is optional; [`TenantConfig::merged_over`] fills the gaps from
//! the node's defaults. Durations are human-readable strings (`"10m"`, `"1h"`,
//! `"7days"`); sizes are bytes.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// A tenant's settings. See the OpenAPI document for each field's meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Bytes of WAL in the open in-memory layer before it is frozen and flushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_distance: Option<u64>,
    /// Longest time ingested data stays only in memory before a flush.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub checkpoint_timeout: Option<Duration>,
    /// Target size of L1 delta layers written by compaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction_target_size: Option<u64>,
    /// Pause between compaction runs; `0s` disables background compaction.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub compaction_period: Option<Duration>,
    /// Number of L0 layers that triggers compaction.
    #[serde(
        default,
        deserialize_with = "int_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub compaction_threshold: Option<u64>,
    /// Bytes of WAL history kept behind the last record for reads in the past.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_horizon: Option<u64>,
    /// Pause between GC runs; `0s` disables background GC.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub gc_period: Option<Duration>,
    /// Number of deltas over a key range that makes compaction write an image layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_creation_threshold: Option<u64>,
    /// Time of history kept for point-in-time reads.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub pitr_interval: Option<Duration>,
    /// Local layer files not read for this long are evicted (they stay in
    /// remote storage and download again on the next read). Off when unset
    /// or `0s`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub evictions_low_residence: Option<Duration>,
}

/// A setting that is out of its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant config: {0}")]
pub struct TenantConfigError(pub String);

/// Accepts `10` or `"10"`: the seed API documents `compaction_threshold` as a
/// string, clients send numbers.
fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Int(u64),
        Str(String),
    }
    match Option::<Either>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Int(v)) => Ok(Some(v)),
        Some(Either::Str(s)) => s.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("expected a non-negative integer, got {s:?}"))
        }),
    }
}

impl TenantConfig {
    /// The node-wide defaults used when neither the tenant nor the node's
    /// configuration file sets a value.
    pub fn builtin_defaults() -> TenantConfig {
        TenantConfig {
            checkpoint_distance: Some(256 * 1024 * 1024),
            checkpoint_timeout: Some(Duration::from_secs(10 * 60)),
            compaction_target_size: Some(128 * 1024 * 1024),
            compaction_period: Some(Duration::from_secs(20)),
            compaction_threshold: Some(10),
            gc_horizon: Some(64 * 1024 * 1024),
            gc_period: Some(Duration::from_secs(60 * 60)),
            image_creation_threshold: Some(3),
            pitr_interval: Some(Duration::from_secs(7 * 24 * 60 * 60)),
            evictions_low_residence: None,
        }
    }

    /// `self`'s values where set, `defaults`' otherwise.
    pub fn merged_over(&self, defaults: &TenantConfig) -> TenantConfig {
        TenantConfig {
            checkpoint_distance: self.checkpoint_distance.or(defaults.checkpoint_distance),
            checkpoint_timeout: self.checkpoint_timeout.or(defaults.checkpoint_timeout),
            compaction_target_size: self
                .compaction_target_size
                .or(defaults.compaction_target_size),
            compaction_period: self.compaction_period.or(defaults.compaction_period),
            compaction_threshold: self.compaction_threshold.or(defaults.compaction_threshold),
            gc_horizon: self.gc_horizon.or(defaults.gc_horizon),
            gc_period: self.gc_period.or(defaults.gc_period),
            image_creation_threshold: self
                .image_creation_threshold
                .or(defaults.image_creation_threshold),
            pitr_interval: self.pitr_interval.or(defaults.pitr_interval),
            evictions_low_residence: self
                .evictions_low_residence
                .or(defaults.evictions_low_residence),
        }
    }

    /// Checks that every set value is in range.
    pub fn validate(&self) -> Result<(), TenantConfigError> {
        let err = |m: String| Err(TenantConfigError(m));
        if let Some(v) = self.checkpoint_distance {
            if v < 8192 {
                return err(format!(
                    "checkpoint_distance must be at least 8192 bytes, got {v}"
                ));
            }
        }
        if self.checkpoint_timeout == Some(Duration::ZERO) {
            return err("checkpoint_timeout must be greater than 0".to_string());
        }
        if let Some(v) = self.compaction_target_size {
            if v < 8192 {
                return err(format!(
                    "compaction_target_size must be at least 8192 bytes, got {v}"
                ));
            }
        }
        if let Some(v) = self.compaction_threshold {
            if v < 2 {
                return err(format!("compaction_threshold must be at least 2, got {v}"));
            }
        }
        if let Some(v) = self.image_creation_threshold {
            if v < 1 {
                return err(format!(
                    "image_creation_threshold must be at least 1, got {v}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_durations_and_threshold_forms() {
        let c: TenantConfig = serde_json::from_str(
            r#"{"checkpoint_timeout": "5m", "compaction_threshold": "7", "gc_horizon": 1024}"#,
        )
        .unwrap();
        assert_eq!(c.checkpoint_timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.compaction_threshold, Some(7));
        let c: TenantConfig = serde_json::from_str(r#"{"compaction_threshold": 4}"#).unwrap();
        assert_eq!(c.compaction_threshold, Some(4));
        let json = serde_json::to_value(TenantConfig::builtin_defaults()).unwrap();
        assert_eq!(json["checkpoint_timeout"], "10m");
        assert_eq!(json["pitr_interval"], "7days");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(serde_json::from_str::<TenantConfig>(r#"{"nope": 1}"#).is_err());
        assert!(serde_json::from_str::<TenantConfig>(r#"{"gc_period": "soon"}"#).is_err());
        assert!(serde_json::from_str::<TenantConfig>(r#"{"gc_horizon": -1}"#).is_err());
        assert!(serde_json::from_str::<TenantConfig>(r#"{"compaction_threshold": "x"}"#).is_err());
        let c = TenantConfig {
            compaction_threshold: Some(1),
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("compaction_threshold"));
        assert!(TenantConfig::builtin_defaults().validate().is_ok());
    }

    #[test]
    fn merge_prefers_overrides() {
        let o = TenantConfig {
            gc_horizon: Some(1),
            ..Default::default()
        };
        let m = o.merged_over(&TenantConfig::builtin_defaults());
        assert_eq!(m.gc_horizon, Some(1));
        assert_eq!(m.compaction_threshold, Some(10));
    }
}
