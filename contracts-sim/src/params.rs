//! Chain parameters, fixed at genesis, and the bounds they must respect.

use attest_protocol::Amount;
use attest_protocol::limits::{MAX_INPUT_BYTES, MAX_OUTPUT_TOKENS, MAX_VALIDATORS};
use attest_protocol::workload::CATALOGUE;
use serde::{Deserialize, Serialize};

use crate::error::GenesisError;

/// Parts per million: the unit of every probability and fraction in [`Params`]. Integers keep
/// the state machine free of floats; a million parts is enough resolution for any rate.
pub const PPM: u32 = 1_000_000;

/// The least share of a slash paid to the winner of a dispute (20%), as the issue requires:
/// enough to pay a checker for the re-execution and the dispute rounds.
pub const MIN_WINNER_SHARE_PPM: u32 = 200_000;

/// The most checker redraws a chain may allow. Each redraw remembers the checkers that failed,
/// so this bounds that list (and the time a job can wait for a verdict).
pub const MAX_CHECKER_REDRAWS: u32 = 16;

/// The chain's economic and timing parameters, read from genesis.
///
/// # How the default minimum stake is sized
///
/// Cheating is irrational when `p * (1 - r) * (R + S) > C` (ARCHITECTURE.md, "Verification
/// economics"): `p` the check rate, `r` the share of checkers colluding with the cheat, `R` the
/// payment a caught cheat forfeits, `S` the stake it loses and `C` the compute it saves. Take
/// `R = 0` (the worst case: a job paying nothing), `p = 0.1`, `r = 0.5` and the default
/// slash fraction of 1/2, so `S = min_stake / 2`. Then `0.1 * 0.5 * 50 = 2.5`: a 100-token
/// minimum stake deters cheating on any job whose compute costs less than 2.5 tokens, which
/// covers the catalogue's jobs at any sane price (a 1024-token job at 0.002 tokens per token).
/// Chains that sell dearer jobs should raise `min_stake` in proportion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// The least fee a transaction may pay; it goes to the block proposer. Default 0.001.
    pub min_fee: Amount,
    /// Bonded stake an account needs to be assigned a job or a check. Default 100 tokens.
    pub min_stake: Amount,
    /// Milliseconds of block time between an `Unstake` and the release of the tokens; stake
    /// stays slashable until then. It must outlast the longest job (checked at genesis).
    /// Default 600,000 (ten minutes).
    pub unbonding_ms: u64,
    /// Blocks after its height during which equivocation evidence is heard (and kept in the
    /// live state). Default 2,000.
    pub evidence_blocks: u64,
    /// The spot-check rate `p`, in parts per million. Default 100,000 (p = 0.1).
    pub check_probability_ppm: u32,
    /// `K`: a provider that lost a dispute has its next `K` results that find a checker
    /// checked (a result with no eligible checker settles unchecked and does not count).
    /// Default 20.
    pub probation_jobs: u32,
    /// `W`: milliseconds of block time a checker has to post its verdict, and an unchecked
    /// result waits before it settles (anyone may challenge it meanwhile). Default 5,000.
    pub verdict_window_ms: u64,
    /// How many times a checker that missed its verdict is replaced before the job settles
    /// unchecked. Default 3; at most [`MAX_CHECKER_REDRAWS`].
    pub max_checker_redraws: u32,
    /// Milliseconds of block time each party has to post its move in each dispute round.
    /// Default 2,500.
    pub dispute_round_ms: u64,
    /// The fraction of the loser's stake (bonded and unbonding) a lost dispute or
    /// equivocation slashes, in parts per million. Default 500,000 (half).
    pub slash_fraction_ppm: u32,
    /// The share of a slash paid to the winner (or to the reporter of equivocation), in parts
    /// per million; at least [`MIN_WINNER_SHARE_PPM`]. Default 200,000. It is kept at the
    /// floor because a larger share lowers the net cost of a slash for a party colluding with
    /// its own accuser. The rest goes to the treasury.
    pub winner_share_ppm: u32,
    /// What the client escrows for the checker and a checker that agrees is paid.
    /// Default 0.01.
    pub checker_fee: Amount,
    /// What a challenger (an account other than the assigned checker) locks to open a
    /// dispute: returned if it wins, forfeited if it loses (the winner's share to the
    /// provider, the rest to the treasury). Default 10 tokens.
    pub challenge_bond: Amount,
    /// The treasury's cut of a provider's payment, in parts per million. Default 10,000 (1%).
    pub protocol_share_ppm: u32,
    /// Taken from the stake of a provider that misses its commit deadline or a checker that
    /// misses its verdict window (capped at its stake). Default 1 token.
    pub missed_deadline_penalty: Amount,
    /// The most input bytes a job may carry; at most the protocol's limit. Default 4096.
    pub max_input_bytes: u32,
    /// The longest commit deadline a job may ask for, in milliseconds. Default 60,000.
    pub max_deadline_ms: u32,
    /// Blocks a final job stays in the live state before it leaves it (hosts keep its
    /// history). At least 1, so the block that ends a job can still be checked against it.
    /// Default 1,000.
    pub retention_blocks: u64,
    /// How many accounts validate: the active stakes with the most bonded stake (ties by
    /// account key), at most the protocol's [`MAX_VALIDATORS`]. Every other eligible stake
    /// still provides and checks. Default 100.
    pub max_validators: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            min_fee: Amount(1_000),
            min_stake: Amount(100 * Amount::UNITS_PER_TOKEN),
            unbonding_ms: 600_000,
            evidence_blocks: 2_000,
            check_probability_ppm: 100_000,
            probation_jobs: 20,
            verdict_window_ms: 5_000,
            max_checker_redraws: 3,
            dispute_round_ms: 2_500,
            slash_fraction_ppm: 500_000,
            winner_share_ppm: MIN_WINNER_SHARE_PPM,
            checker_fee: Amount(10_000),
            challenge_bond: Amount(10 * Amount::UNITS_PER_TOKEN),
            protocol_share_ppm: 10_000,
            missed_deadline_penalty: Amount(Amount::UNITS_PER_TOKEN),
            max_input_bytes: MAX_INPUT_BYTES as u32,
            max_deadline_ms: 60_000,
            retention_blocks: 1_000,
            max_validators: 100,
        }
    }
}

impl Params {
    /// Checks every bound; genesis refuses parameters that fail.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |field: &'static str, reason: &'static str| {
            Err(GenesisError::BadParam { field, reason })
        };
        for (field, v) in [
            ("check_probability_ppm", self.check_probability_ppm),
            ("slash_fraction_ppm", self.slash_fraction_ppm),
            ("winner_share_ppm", self.winner_share_ppm),
            ("protocol_share_ppm", self.protocol_share_ppm),
        ] {
            if v > PPM {
                return bad(field, "more than 1,000,000 parts per million");
            }
        }
        if self.winner_share_ppm < MIN_WINNER_SHARE_PPM {
            return bad("winner_share_ppm", "below the 20% floor");
        }
        if self.max_validators == 0 || self.max_validators as usize > MAX_VALIDATORS {
            return bad("max_validators", "not between 1 and the protocol's 256");
        }
        if self.max_checker_redraws > MAX_CHECKER_REDRAWS {
            return bad("max_checker_redraws", "above 16");
        }
        if self.max_input_bytes as usize > MAX_INPUT_BYTES {
            return bad("max_input_bytes", "above the protocol's input limit");
        }
        if self.verdict_window_ms == 0 || self.dispute_round_ms == 0 {
            return bad("windows", "a window of zero milliseconds cannot be met");
        }
        if self.max_deadline_ms == 0 {
            return bad(
                "max_deadline_ms",
                "a deadline of zero milliseconds cannot be met",
            );
        }
        if self.evidence_blocks == 0 {
            return bad(
                "evidence_blocks",
                "evidence must be heard for at least one block",
            );
        }
        if self.retention_blocks == 0 {
            return bad(
                "retention_blocks",
                "a final job must stay for at least the block that ended it",
            );
        }
        match self.longest_job_ms() {
            Some(longest) if self.unbonding_ms > longest => Ok(()),
            _ => bad(
                "unbonding_ms",
                "stake must stay slashable for longer than the longest job can run",
            ),
        }
    }

    /// The most milliseconds of block time a job can stay open: its commit deadline, every
    /// verdict window with redraws, and every dispute round with the resolution phase, for the
    /// longest trace any catalogue model can have. Unbonding must outlast it so a party cannot
    /// walk away with the stake a pending dispute may slash. (A timeout fires in the first
    /// block whose time reaches it, so a job outlives this by at most one block interval,
    /// which a release due in the same block cannot overtake: timeouts run first.) `None` on
    /// overflow.
    pub fn longest_job_ms(&self) -> Option<u64> {
        let max_layers = CATALOGUE.iter().map(|m| u64::from(m.layers)).max()?;
        let max_steps = (MAX_INPUT_BYTES as u64 + u64::from(MAX_OUTPUT_TOKENS)) * max_layers;
        let rounds = u64::from(rounds_for(max_steps)?);
        let verdicts = self
            .verdict_window_ms
            .checked_mul(u64::from(self.max_checker_redraws) + 1)?;
        let disputes = self.dispute_round_ms.checked_mul(rounds + 1)?;
        u64::from(self.max_deadline_ms)
            .checked_add(verdicts)?
            .checked_add(disputes)
    }
}

/// `amount * ppm / 1_000_000`, rounded down. Never overflows (computed in 128 bits) and the
/// result is at most `amount` when `ppm <= 1_000_000`.
pub fn ppm_floor(amount: Amount, ppm: u32) -> Amount {
    let v = u128::from(amount.0) * u128::from(ppm.min(PPM)) / u128::from(PPM);
    Amount(u64::try_from(v).unwrap_or(amount.0))
}

/// `amount * ppm / 1_000_000`, rounded up (at most `amount` when `ppm <= 1_000_000`).
pub fn ppm_ceil(amount: Amount, ppm: u32) -> Amount {
    let v = (u128::from(amount.0) * u128::from(ppm.min(PPM))).div_ceil(u128::from(PPM));
    Amount(u64::try_from(v).unwrap_or(amount.0))
}

/// `ceil(log2 steps)`: the rounds of a bisection dispute over `steps` leaves. `None` for no
/// steps. (The dispute rules are `apply::disputes`; this count is here because the parameters'
/// bounds depend on it too.)
pub fn rounds_for(steps: u64) -> Option<u32> {
    match steps {
        0 => None,
        1 => Some(0),
        n => Some(64 - (n - 1).leading_zeros()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Params::default().validate(), Ok(()));
    }

    #[test]
    fn winner_share_floor_is_enforced() {
        let p = Params {
            winner_share_ppm: 199_999,
            ..Params::default()
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn short_unbonding_is_refused() {
        let p = Params {
            unbonding_ms: 10,
            ..Params::default()
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn ppm_rounding() {
        assert_eq!(ppm_floor(Amount(10), 150_000), Amount(1));
        assert_eq!(ppm_ceil(Amount(10), 150_000), Amount(2));
        assert_eq!(ppm_floor(Amount(u64::MAX), PPM), Amount(u64::MAX));
        assert_eq!(ppm_ceil(Amount(u64::MAX), PPM), Amount(u64::MAX));
    }
}
