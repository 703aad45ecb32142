//! Helpers shared by the benchmarks: spreads of repeated runs and settings
//! from the environment. Each benchmark uses a part of them.
#![allow(dead_code)]

/// Median, min and max of a few runs.
pub struct Spread {
    /// Median value.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (not empty).
    pub fn of(mut v: Vec<f64>) -> Spread {
        v.sort_by(f64::total_cmp);
        Spread {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    /// "median unit (min a, max b)" with `decimals` digits.
    pub fn show(&self, decimals: usize, unit: &str) -> String {
        format!(
            "{:9.d$} {unit} (min {:.d$}, max {:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// Setting `name` from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a valid value")),
        Err(_) => default,
    }
}
