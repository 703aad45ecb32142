//! LSN-by-timestamp: which LSN a wall-clock time corresponds to, found by
//! binary search over LSN on the stored last-commit value (see
//! [`pageserver_api::commit_ts`]).
//!
//! Reading [`LAST_COMMIT_TS_KEY`] at an LSN is one layer-map search per
//! layer visited, O(log n); the search needs O(log(LSN range)) reads, and
//! fewer in practice because a read at LSN `x` that finds a commit at `c`
//! answers for the whole range `c..=x`. The running maximum of commit
//! timestamps is monotone in LSN, so "the greatest LSN whose maximum is at
//! or before `t`" is found exactly, even when raw commit timestamps are not
//! in LSN order.
//!
//! The searched range is every readable LSN of the timeline: from the
//! earliest LSN reads are served at (the GC cutoff, or for a branch whose
//! cutoff is still its branch point, the ancestor's readable range below
//! it) to the last record LSN.

use pageserver_api::commit_ts::LastCommitTs;
use pageserver_api::key::LAST_COMMIT_TS_KEY;
use utils::lsn::Lsn;

use super::read::PageReconstructError;
use super::Timeline;

/// Where a timestamp falls in a timeline's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LsnForTimestamp {
    /// The end LSN of the last commit whose running maximum timestamp is at
    /// or before the timestamp (never below the earliest readable LSN).
    Present(Lsn),
    /// Every retained commit is after the timestamp: the earliest readable LSN.
    Past(Lsn),
    /// The timestamp is at or after the last commit: the last record LSN.
    Future(Lsn),
    /// No commit at all: the last record LSN.
    NoData(Lsn),
}

/// Binary search over `lo..=hi` for timestamp `ts`, reading the last commit
/// at an LSN with `probe` (which must be monotone: a later LSN never gives
/// a smaller running maximum, and the commit it gives is at or below it).
pub fn search<E>(
    lo: Lsn,
    hi: Lsn,
    ts: i64,
    mut probe: impl FnMut(Lsn) -> Result<Option<LastCommitTs>, E>,
) -> Result<LsnForTimestamp, E> {
    // `at_or_before(v)`: the state at that LSN has no commit after `ts`.
    let at_or_before = |v: &Option<LastCommitTs>| v.is_none_or(|c| c.max_ts <= ts);
    let last = probe(hi)?;
    let Some(last_commit) = last else {
        return Ok(LsnForTimestamp::NoData(hi));
    };
    if last_commit.max_ts <= ts {
        return Ok(LsnForTimestamp::Future(hi));
    }
    let mut lo_val = probe(lo)?;
    if !at_or_before(&lo_val) {
        return Ok(LsnForTimestamp::Past(lo));
    }
    // Invariant: at_or_before(lo) holds, at_or_before(hi) does not.
    let (mut lo_lsn, mut hi_lsn) = (lo, hi);
    while hi_lsn.0 - lo_lsn.0 > 1 {
        let mid = Lsn(lo_lsn.0 + (hi_lsn.0 - lo_lsn.0) / 2);
        let v = probe(mid)?;
        if at_or_before(&v) {
            lo_lsn = mid;
            lo_val = v;
        } else {
            // The same value is read from its commit LSN up to `mid`.
            let c = v.expect("a value that is after ts exists").commit_lsn;
            hi_lsn = if c > lo_lsn { c } else { mid };
        }
    }
    Ok(match lo_val {
        Some(c) => LsnForTimestamp::Present(c.commit_lsn.max(lo)),
        None => LsnForTimestamp::Past(lo),
    })
}

impl Timeline {
    /// The earliest LSN at which this timeline serves reads: its GC cutoff,
    /// or, while a branch's cutoff is its branch point, the earliest
    /// readable LSN of the ancestor (when at or below the branch point).
    pub fn earliest_readable_lsn(&self) -> Lsn {
        let cutoff = self.gc_cutoff_lsn();
        if let Some(ancestor) = self.ancestor() {
            let branch_point = self.ancestor_lsn();
            if cutoff <= branch_point {
                let earliest = ancestor.earliest_readable_lsn();
                if earliest <= branch_point {
                    return earliest;
                }
            }
        }
        cutoff
    }

    /// The last commit at or below `lsn`, `None` when there is none. Below
    /// the GC cutoff of a branch, reads continue in the ancestor. Blocking.
    pub fn last_commit_at(&self, lsn: Lsn) -> Result<Option<LastCommitTs>, PageReconstructError> {
        let mut tl = self;
        while lsn < tl.gc_cutoff_lsn() {
            match tl.ancestor() {
                Some(ancestor) if lsn <= tl.ancestor_lsn() => tl = ancestor,
                _ => break,
            }
        }
        match tl.get_blocking(LAST_COMMIT_TS_KEY, lsn) {
            Ok(v) => {
                LastCommitTs::decode(&v)
                    .map(Some)
                    .map_err(|source| PageReconstructError::Value {
                        key: LAST_COMMIT_TS_KEY,
                        lsn,
                        source,
                    })
            }
            Err(PageReconstructError::MissingKey { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The LSN of timestamp `ts` (PostgreSQL `TimestampTz`), searching
    /// every readable LSN up to the last record LSN. Blocking.
    pub fn find_lsn_for_timestamp(&self, ts: i64) -> Result<LsnForTimestamp, PageReconstructError> {
        let hi = self.last_record_lsn();
        let lo = self.earliest_readable_lsn().min(hi);
        search(lo, hi, ts, |lsn| self.last_commit_at(lsn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    /// Commits at LSNs with raw timestamps, as ingest stores them.
    fn history(commits: &[(u64, i64)]) -> BTreeMap<Lsn, LastCommitTs> {
        let mut out = BTreeMap::new();
        let mut prev = None;
        for (lsn, ts) in commits {
            let v = LastCommitTs::next(prev, Lsn(*lsn), *ts);
            out.insert(Lsn(*lsn), v);
            prev = Some(v);
        }
        out
    }

    fn probe_of<'a>(
        h: &'a BTreeMap<Lsn, LastCommitTs>,
        reads: &'a mut u32,
    ) -> impl FnMut(Lsn) -> Result<Option<LastCommitTs>, ()> + 'a {
        move |lsn| {
            *reads += 1;
            Ok(h.range(..=lsn).next_back().map(|(_, v)| *v))
        }
    }

    /// The answer by scanning every commit.
    fn brute_force(h: &BTreeMap<Lsn, LastCommitTs>, lo: Lsn, hi: Lsn, ts: i64) -> LsnForTimestamp {
        let at = |lsn: Lsn| h.range(..=lsn).next_back().map(|(_, v)| *v);
        match at(hi) {
            None => return LsnForTimestamp::NoData(hi),
            Some(v) if v.max_ts <= ts => return LsnForTimestamp::Future(hi),
            _ => {}
        }
        let mut best = at(lo);
        if best.is_some_and(|v| v.max_ts > ts) {
            return LsnForTimestamp::Past(lo);
        }
        for (lsn, v) in h.range(lo..=hi) {
            if v.max_ts <= ts {
                best = Some(*v);
            } else {
                break;
            }
            let _ = lsn;
        }
        match best {
            Some(v) => LsnForTimestamp::Present(v.commit_lsn.max(lo)),
            None => LsnForTimestamp::Past(lo),
        }
    }

    #[test]
    fn kinds_on_a_small_history() {
        let h = history(&[(100, 10), (200, 20), (300, 15), (400, 40)]);
        let mut reads = 0;
        let mut s = |ts| search(Lsn(50), Lsn(500), ts, probe_of(&h, &mut reads)).unwrap();
        assert_eq!(s(5), LsnForTimestamp::Past(Lsn(50)));
        assert_eq!(s(10), LsnForTimestamp::Present(Lsn(100)));
        assert_eq!(s(19), LsnForTimestamp::Present(Lsn(100)));
        // The commit at 300 has raw timestamp 15 but running maximum 20.
        assert_eq!(s(20), LsnForTimestamp::Present(Lsn(300)));
        assert_eq!(s(39), LsnForTimestamp::Present(Lsn(300)));
        assert_eq!(s(40), LsnForTimestamp::Future(Lsn(500)));
        let empty = BTreeMap::new();
        let mut reads = 0;
        assert_eq!(
            search(Lsn(1), Lsn(9), 0, probe_of(&empty, &mut reads)).unwrap(),
            LsnForTimestamp::NoData(Lsn(9))
        );
        // A commit below the searched range is reported at the range start.
        let mut reads = 0;
        assert_eq!(
            search(Lsn(250), Lsn(500), 39, probe_of(&h, &mut reads)).unwrap(),
            LsnForTimestamp::Present(Lsn(300))
        );
        let mut reads = 0;
        assert_eq!(
            search(Lsn(150), Lsn(250), 25, probe_of(&h, &mut reads)).unwrap(),
            LsnForTimestamp::Future(Lsn(250))
        );
        let mut reads = 0;
        assert_eq!(
            search(Lsn(150), Lsn(500), 12, probe_of(&h, &mut reads)).unwrap(),
            LsnForTimestamp::Present(Lsn(150))
        );
    }

    #[test]
    fn matches_brute_force_with_unordered_timestamps() {
        let mut rng = StdRng::seed_from_u64(8);
        for _ in 0..300 {
            let n = rng.gen_range(0..200);
            let mut lsn = rng.gen_range(0..1000u64);
            let mut ts = rng.gen_range(-1000..1000i64);
            let mut commits = Vec::new();
            for _ in 0..n {
                lsn += rng.gen_range(1..5000);
                // Mostly rising, sometimes earlier than the previous commit.
                ts += rng.gen_range(-30..100);
                commits.push((lsn, ts));
            }
            let h = history(&commits);
            let lo = Lsn(rng.gen_range(0..lsn / 2 + 1));
            let hi = Lsn(lsn + rng.gen_range(0..100));
            for _ in 0..20 {
                let t = rng.gen_range(-1500..ts + 200);
                let mut reads = 0;
                let got = search(lo, hi, t, probe_of(&h, &mut reads)).unwrap();
                assert_eq!(got, brute_force(&h, lo, hi, t), "ts {t} in {lo}..={hi}");
                // Logarithmic: at most 2 end reads plus one per halving.
                let bound = 3 + 64 - (hi.0 - lo.0 + 1).leading_zeros();
                assert!(
                    reads <= bound,
                    "{reads} reads for a range of {}",
                    hi.0 - lo.0
                );
            }
        }
    }
}
