//! Helpers shared by the benchmarks: spreads of repeated runs and settings
//! from the environment. Each benchmark uses a part of them.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// How the floor file is made durable.
#[derive(Clone, Copy, Debug)]
pub enum FloorSync {
    /// One fsync at the end.
    AtEnd,
    /// An fsync every this many bytes, and one at the end.
    Every(u64),
    /// Writeback started every this many bytes
    /// ([`utils::crashsafe::start_writeback`], as the layer writers do), and
    /// one fsync at the end.
    Writeback(u64),
}

/// The machine's sequential write rate, the benchmarks' floor: writes
/// `bytes` of `chunk` repeated into a file in `dir`, made durable as `sync`
/// says. Returns the time taken.
pub fn write_floor(dir: &Path, bytes: u64, sync: FloorSync, chunk: &[u8]) -> Duration {
    let path = dir.join("floor.tmp");
    let started = Instant::now();
    let mut f = File::create(&path).expect("create floor file");
    let (mut written, mut synced) = (0, 0);
    while written < bytes {
        let n = chunk.len().min((bytes - written) as usize);
        f.write_all(&chunk[..n]).expect("write floor file");
        written += n as u64;
        match sync {
            FloorSync::AtEnd => {}
            FloorSync::Every(every) if written - synced >= every => {
                f.sync_all().expect("fsync floor file");
                synced = written;
            }
            FloorSync::Writeback(every) if written - synced >= every => {
                utils::crashsafe::start_writeback(&f, synced, written - synced)
                    .expect("start floor writeback");
                synced = written;
            }
            FloorSync::Every(_) | FloorSync::Writeback(_) => {}
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
