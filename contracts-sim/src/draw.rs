//! The spot-check draw: whether a committed result is checked, and by whom.
//!
//! The seed of a result committed in block `h` is `H("attest/spot-check/v1", block_hash(h) ||
//! job_id)`. Nobody knows it when the provider executes (the block hash does not exist yet),
//! and every node computes the same one.
//!
//! **Selection.** Read the seed's first 16 bytes as a big-endian `u128` `x`. With the check
//! rate `p` in parts per million, the result is checked iff `p_ppm >= 1_000_000`, or
//! `x < p_ppm * floor((2^128 - 1) / 1_000_000)`. That is the rule `seed < p * 2^256` on the
//! seed's top 128 bits, with `p * 2^128` rounded down to a multiple of `2^128 / 10^6`; the
//! rate it gives differs from `p` by less than `2^-108`.
//!
//! **Checker.** Draw `k` (0 for the first checker, `k` for the `k`-th redraw) is the first 16
//! bytes, big-endian, of `H("attest/spot-check/v1", seed || u32_le(k))` (68 bytes of data, so
//! it can never collide with a seed, which hashes 64). The candidates are the staked accounts
//! in ascending key order that are active, have at least `min_stake` bonded, and are neither
//! the provider, the client nor a checker that already failed this job; each weighs its
//! bonded stake. The checker is the candidate whose cumulative-weight interval contains
//! `draw mod total_weight` (bias below `2^-64`, since the total fits in 64 bits).

use attest_protocol::hash::{hash_tagged, tag};
use attest_protocol::{AccountId, Amount, BlockHash, Hash, JobId};

use crate::params::PPM;

/// `H("attest/spot-check/v1", block_hash || job_id)`.
pub fn spot_check_seed(block: &BlockHash, job: &JobId) -> Hash {
    hash_tagged(tag::SPOT_CHECK, &[&block.0, &job.0])
}

/// Whether a result with this seed is checked at rate `p_ppm`.
pub fn is_selected(seed: &Hash, p_ppm: u32) -> bool {
    if p_ppm >= PPM {
        return true;
    }
    top_u128(&seed.0) < u128::from(p_ppm) * (u128::MAX / u128::from(PPM))
}

/// Draw number `k` derived from a seed.
pub fn draw_value(seed: &Hash, k: u32) -> u128 {
    top_u128(&hash_tagged(tag::SPOT_CHECK, &[&seed.0, &k.to_le_bytes()]).0)
}

/// Picks from `(account, weight)` candidates (in the order given) by `draw`, stake-weighted.
/// `None` when there is no candidate or no weight.
pub fn pick_weighted(candidates: &[(AccountId, Amount)], draw: u128) -> Option<AccountId> {
    let total: u128 = candidates.iter().map(|(_, w)| u128::from(w.0)).sum();
    if total == 0 {
        return None;
    }
    let mut target = draw % total;
    for (who, weight) in candidates {
        let w = u128::from(weight.0);
        if target < w {
            return Some(*who);
        }
        target -= w;
    }
    None
}

fn top_u128(bytes: &[u8; 32]) -> u128 {
    let mut top = [0u8; 16];
    top.copy_from_slice(&bytes[..16]);
    u128::from_be_bytes(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_bounds() {
        let zero = Hash([0; 32]);
        let max = Hash([0xff; 32]);
        assert!(!is_selected(&zero, 0));
        assert!(is_selected(&zero, 1));
        assert!(!is_selected(&max, 999_999));
        assert!(is_selected(&max, PPM));
    }

    #[test]
    fn weighted_pick_walks_cumulative_weights() {
        let a = attest_protocol::SecretKey::from_seed([1; 32]).public();
        let b = attest_protocol::SecretKey::from_seed([2; 32]).public();
        let c = [(a, Amount(3)), (b, Amount(1))];
        assert_eq!(pick_weighted(&c, 0), Some(a));
        assert_eq!(pick_weighted(&c, 2), Some(a));
        assert_eq!(pick_weighted(&c, 3), Some(b));
        assert_eq!(pick_weighted(&c, 7), Some(b));
        assert_eq!(pick_weighted(&[], 7), None);
    }
}
