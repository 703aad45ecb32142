//! Helpers shared by the benchmarks: spreads of repeated runs and settings
//! from the environment. Each benchmark uses a part of them.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The machine's sequential write rate, the benchmarks' floor: writes
/// `bytes` of `chunk` repeated into a file in `dir`, with an fsync every
/// `sync_every` bytes if given and one at the end. Returns the time taken.
pub fn write_floor(dir: &Path, bytes: u64, sync_every: Option<u64>, chunk: &[u8]) -> Duration {
    let path = dir.join("floor.tmp");
    let started = Instant::now();
    let mut f = File::create(&path).expect("create floor file");
    let mut written = 0;
    while written < bytes {
        let n = chunk.len().min((bytes - written) as usize);
        f.write_all(&chunk[..n]).expect("write floor file");
        written += n as u64;
        if sync_every.is_some_and(|s| written % s == 0) {
            f.sync_all().expect("fsync floor file");
        }
    }
    f.sync_all().expect("fsync floor file");
    let elapsed = started.elapsed();
    drop(f);
    std::fs::remove_file(&path).expect("remove floor file");
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
    elapsed
}

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
