//! Test-only cheat modes: deliberately wrong results, to exercise spot-checks and disputes.
//!
//! This module is the vocabulary (a mode, a rate, the per-job draw) and is always built, so a
//! node can read a config that names one and refuse it. The code that makes wrong results,
//! [`run_job`](super::cheated::run_job), is compiled only with the `cheats` feature: a
//! production build cannot cheat however it is configured.
//!
//! A cheat setting is `MODE:RATE` (`flip:0.1`, `lazy:1.0`): each job is cheated on with
//! probability `RATE`, drawn from the job's seed by [`should_cheat`]. In config such a setting
//! must be named `danger_*` (e.g. `danger_cheat = "flip:0.1"`); an honest node never sets one.
//!
//! Every cheated result is well formed: the right step count, `max_tokens` printable output
//! bytes, a final activation of the job's width whose accumulator is the reported output hash,
//! and a last leaf that is `leaf_hash(last, final_activation)`. So it passes every format check
//! the ledger makes on a committed result and is caught only by re-execution. A cheating
//! provider must later open leaves of its own trace in a dispute, so [`run_job`] is a pure
//! function of `(job, mode, seed)`: the caller keeps the seed (or derives it again, e.g. from a
//! node secret and the job id) and replays the run.
//!
//! - **Lazy** does no computation: the output, the final hidden state and every leaf but the
//!   last are drawn from a blake3 XOF over the seed and the job.
//! - **Truncate** runs the model but skips a quarter of its layers: the `layers / 4` layers
//!   just before the last (at least one) keep the previous activation instead of computing
//!   their own. The last layer still runs, because in the stand-in it is also the output head:
//!   it emits the token and updates the accumulator, so the output hash stays the accumulator
//!   of the (wrong) tokens. A real truncating cheater likewise still has to run its output head.
//! - **Flip** runs the model honestly but XORs one hidden-state byte of one step, chosen from
//!   the seed, with a non-zero mask. The step is never a token-emitting one (it is not the last
//!   layer of a position), so the tokens that follow come from the corrupted state and the
//!   accumulator stays consistent with them. The trace diverges at exactly that step; the
//!   output may or may not change.

use std::fmt;
use std::str::FromStr;

use attest_protocol::hash::hash_tagged;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::AccelError;

/// Domain tag of the draw that decides whether to cheat on a job. Node-local, not a protocol
/// tag: nothing on the ledger depends on it.
const TAG_DRAW: &str = "attest-node/cheat-draw/v1";

/// A rate of one: every job.
pub const RATE_ONE_PPM: u32 = 1_000_000;

/// How a cheating provider corrupts a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheatMode {
    /// Skip the computation and make up the result.
    Lazy,
    /// Skip the last layers before the output layer.
    Truncate,
    /// Corrupt one byte of one step.
    Flip,
}

impl CheatMode {
    /// Every mode, in the order error messages list them.
    pub const ALL: [CheatMode; 3] = [CheatMode::Lazy, CheatMode::Truncate, CheatMode::Flip];

    /// The mode's name in a cheat setting.
    pub fn name(self) -> &'static str {
        match self {
            CheatMode::Lazy => "lazy",
            CheatMode::Truncate => "truncate",
            CheatMode::Flip => "flip",
        }
    }
}

impl fmt::Display for CheatMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A cheat setting: a mode and the fraction of jobs it applies to, in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cheat {
    /// How to cheat.
    pub mode: CheatMode,
    /// Jobs cheated on, per million (0 to [`RATE_ONE_PPM`]).
    pub rate_ppm: u32,
}

impl fmt::Display for Cheat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.rate_ppm / RATE_ONE_PPM;
        let frac = self.rate_ppm % RATE_ONE_PPM;
        let digits = format!("{frac:06}");
        let digits = digits.trim_end_matches('0');
        let digits = if digits.is_empty() { "0" } else { digits };
        write!(f, "{}:{whole}.{digits}", self.mode)
    }
}

impl FromStr for Cheat {
    type Err = AccelError;

    /// Parses `MODE:RATE`, where `RATE` is a decimal from 0 to 1 with at most six decimals.
    fn from_str(s: &str) -> Result<Self, AccelError> {
        let bad = |reason: String| AccelError::BadCheat {
            text: s.to_owned(),
            reason,
        };
        let modes = || {
            CheatMode::ALL
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some((mode, rate)) = s.split_once(':') else {
            return Err(bad(format!(
                "expected MODE:RATE, e.g. flip:0.1 (modes: {})",
                modes()
            )));
        };
        let mode = mode.trim();
        let mode = CheatMode::ALL
            .into_iter()
            .find(|m| m.name() == mode)
            .ok_or_else(|| bad(format!("unknown mode {mode:?}; the modes are {}", modes())))?;
        let rate_ppm = parse_rate_ppm(rate.trim()).map_err(bad)?;
        Ok(Cheat { mode, rate_ppm })
    }
}

/// A decimal from 0 to 1 with at most six decimals, as parts per million, exactly.
fn parse_rate_ppm(text: &str) -> Result<u32, String> {
    let not_decimal = || format!("rate {text:?} is not a decimal between 0 and 1 (e.g. 0.1)");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (text.contains('.') && !digits(frac)) {
        return Err(not_decimal());
    }
    if frac.len() > 6 {
        return Err(format!(
            "rate {text:?} has more than six decimals (the unit is one in a million)"
        ));
    }
    // At most six fraction digits, padded to six: fits a u32.
    let frac_ppm: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().map_err(|_| not_decimal())?
    };
    let whole = whole.trim_start_matches('0');
    let above_one = || format!("rate {text:?} is above 1 (a rate is a fraction of jobs)");
    match whole {
        "" => Ok(frac_ppm),
        "1" if frac_ppm == 0 => Ok(RATE_ONE_PPM),
        _ => Err(above_one()),
    }
}

impl Serialize for Cheat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cheat {
    /// The text form, `"MODE:RATE"`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether to cheat on the job whose seed is `seed`: true for a fraction `rate_ppm / 1e6` of
/// seeds. Deterministic: the same seed gives the same answer.
pub fn should_cheat(cheat: &Cheat, seed: &[u8; 32]) -> bool {
    if cheat.rate_ppm == 0 {
        return false;
    }
    if cheat.rate_ppm >= RATE_ONE_PPM {
        return true;
    }
    let draw = hash_tagged(TAG_DRAW, &[seed.as_slice()]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&draw.0[..8]);
    // The modulo bias is 1e6 / 2^64, far below anything a test could see.
    u64::from_le_bytes(first) % u64::from(RATE_ONE_PPM) < u64::from(cheat.rate_ppm)
}
