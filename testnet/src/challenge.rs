//! `attest challenge JOB`: re-execute a committed result here and, if it is wrong, challenge
//! it on the ledger and play the bisection dispute to its end.
//!
//! The job's model, input and token count come from its `OpenJob` transaction, read from the
//! raw block that opened it and matched by hash to the job id, so the re-execution does not
//! rest on the node's word. A result whose last trace leaf equals the re-execution's is right
//! (the workload is bit-exact), and nothing is posted. Otherwise the client posts a
//! `Disagree` (the contract locks the chain's challenge bond: returned with the winner's
//! share of the provider's slash if the challenge wins, forfeited if it loses) and answers
//! every round from its own trace until the contract decides.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use attest_node::api::jobs::{Assurance, JobView};
use attest_protocol::tx::{
    Action, Activation, DisputeMove, DisputeStep, OpenJob, Verdict, VerdictOutcome,
};
use attest_protocol::workload::{self, Execution};
use attest_protocol::{AccountId, JobId, Round, tx_hash};

use crate::client::{Api, Opener, code_of};

/// The schema of `attest challenge --json`.
pub const SCHEMA: &str = "attest.challenge/1";

/// How often the job is read while a challenge is played.
const POLL: Duration = Duration::from_millis(200);

/// A move not taken into the dispute this long after it was sent is sent again (it may have
/// been dropped with a refused predecessor).
const RESEND_AFTER: Duration = Duration::from_secs(4);

/// What `attest challenge` needs.
#[derive(Debug, Clone)]
pub struct ChallengeArgs {
    /// The node URL.
    pub node: String,
    /// The challenging account's key file (the job's client, or a staked account).
    pub key: PathBuf,
    /// The job.
    pub job: JobId,
    /// Give up after this long.
    pub timeout: Duration,
}

/// How a challenge ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The re-execution agrees with the committed result: nothing was posted.
    Agrees,
    /// The provider lost the dispute: it was slashed, the client refunded, the bond returned.
    Won,
    /// The provider won the dispute: the bond was forfeited.
    Lost,
}

/// The report of `attest challenge` (`attest.challenge/1`).
#[derive(Debug, Clone, Serialize)]
pub struct ChallengeReport {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The job.
    pub job: JobId,
    /// The challenging account.
    pub challenger: AccountId,
    /// How it ended.
    pub outcome: Outcome,
    /// The provider's committed last leaf.
    pub committed_final_leaf: String,
    /// This re-execution's last leaf.
    pub local_final_leaf: String,
    /// Dispute moves this client posted.
    pub moves: u32,
    /// The job's phase at the end.
    pub phase: String,
}

/// Re-executes `args.job` and challenges it if it is wrong; `say` gets each progress line.
pub fn challenge(args: &ChallengeArgs, mut say: impl FnMut(String)) -> Result<ChallengeReport> {
    let mut opener = Opener::new(&args.node, &args.key)?;
    let id = args.job.to_string();
    let view = opener.api().job(&id)?;
    let Some(result) = view.result.clone() else {
        bail!(
            "job {id} has no committed result to challenge (it is {})",
            view.phase
        );
    };
    let open = opening_tx(opener.api(), &view)?;
    let wjob = workload::Job::new(open.model.as_str(), open.input.as_slice(), open.max_tokens)
        .map_err(|e| anyhow!("job {id}: {e}"))?;
    let execution = workload::execute(&wjob);
    let local = execution.leaves.last().copied().unwrap_or_default();
    say(format!(
        "re-executed job {id} here: {} steps, last leaf {local}; the provider committed {}",
        execution.step_count(),
        result.final_leaf
    ));
    let mut report = ChallengeReport {
        schema: SCHEMA,
        job: args.job,
        challenger: opener.account(),
        outcome: Outcome::Agrees,
        committed_final_leaf: result.final_leaf.to_string(),
        local_final_leaf: local.to_string(),
        moves: 0,
        phase: view.phase.clone(),
    };
    if local == result.final_leaf {
        say("the result is right: it matches this re-execution; no challenge posted".into());
        return Ok(report);
    }
    if view.phase != "committed" {
        bail!(
            "job {id} is {}: only a committed result in its verdict window can be challenged",
            view.phase
        );
    }
    let verdict = Action::Verdict(Verdict {
        job: args.job,
        outcome: VerdictOutcome::disagree(&execution),
    });
    opener.send(verdict).context("the challenge was refused")?;
    say("the result is wrong: challenge posted (the contract locks the bond)".into());
    let (outcome, moves, phase) = play(&mut opener, args, &wjob, &execution, &mut say)?;
    report.outcome = outcome;
    report.moves = moves;
    report.phase = phase;
    Ok(report)
}

/// The `OpenJob` that opened the job: in the block at `view.opened_at`, the transaction whose
/// hash is the job id.
fn opening_tx(api: &Api, view: &JobView) -> Result<OpenJob> {
    let (block, _) = api
        .raw_block(view.opened_at)?
        .ok_or_else(|| anyhow!("the node has no block {}", view.opened_at.0))?;
    let tx = block
        .txs
        .iter()
        .find(|tx| JobId::from(tx_hash(tx)) == view.id)
        .ok_or_else(|| {
            anyhow!(
                "block {} holds no transaction with hash {}",
                view.opened_at.0,
                view.id
            )
        })?;
    match &tx.body.action {
        Action::OpenJob(open) => Ok(open.clone()),
        _ => bail!("transaction {} is not an OpenJob", view.id),
    }
}

/// Plays the dispute as the challenger until the job is final; returns the outcome, the
/// moves posted and the final phase.
fn play(
    opener: &mut Opener,
    args: &ChallengeArgs,
    wjob: &workload::Job<'_>,
    execution: &Execution,
    say: &mut impl FnMut(String),
) -> Result<(Outcome, u32, String)> {
    let started = Instant::now();
    let id = args.job.to_string();
    let me = opener.account();
    let tree = execution.tree();
    let mut moves = 0u32;
    // The round of the last move sent, and when.
    let mut sent: Option<(u32, Instant)> = None;
    let mut opened = false;
    loop {
        if started.elapsed() > args.timeout {
            bail!(
                "job {id}: the dispute was not decided within {:?}",
                args.timeout
            );
        }
        let view = opener.api().job(&id)?;
        match (&view.assurance, view.dispute.as_ref()) {
            (Assurance::Overturned { challenger, .. }, _) if *challenger == me => {
                say("won: the provider lost the dispute and was slashed; the client was refunded and the bond returned".into());
                return Ok((Outcome::Won, moves, view.phase));
            }
            (Assurance::UpheldInDispute { challenger, .. }, _) if *challenger == me => {
                say("lost: the provider won the dispute; the bond is forfeited".into());
                return Ok((Outcome::Lost, moves, view.phase));
            }
            (Assurance::Challenged { challenger, .. }, Some(d)) if *challenger == me => {
                if !opened {
                    opened = true;
                    say(format!(
                        "dispute opened: {} bisection rounds, then one step re-executed by the contract",
                        d.rounds
                    ));
                }
                let fresh = sent.is_none_or(|(round, at)| {
                    round != d.round || (!d.challenger_moved && at.elapsed() > RESEND_AFTER)
                });
                if !d.challenger_moved && fresh {
                    let step = if let Some(index) = d.open_index {
                        let i = usize::try_from(index)?;
                        let leaf = *execution
                            .leaves
                            .get(i)
                            .ok_or_else(|| anyhow!("round index {index} is past the trace"))?;
                        let proof = tree
                            .prove(index)
                            .ok_or_else(|| anyhow!("no proof for index {index}"))?;
                        DisputeStep::Open { index, leaf, proof }
                    } else {
                        let lo = d
                            .agreed_step
                            .ok_or_else(|| anyhow!("the resolution phase needs an agreed step"))?;
                        let activation = workload::activation_at(wjob, lo)?;
                        DisputeStep::Witness {
                            activation: Activation::new(activation)
                                .map_err(|_| anyhow!("activation too long"))?,
                        }
                    };
                    let mv = Action::Dispute(DisputeMove {
                        job: args.job,
                        round: Round(d.round),
                        step,
                    });
                    match opener.send(mv) {
                        Ok(_) => {
                            moves += 1;
                            say(format!("round {}: move posted", d.round));
                        }
                        // Taken already, or refused for a stale nonce: read the job again.
                        Err(e) if code_of(&e).is_some() => opener.resync()?,
                        Err(e) => return Err(e),
                    }
                    sent = Some((d.round, Instant::now()));
                }
            }
            (Assurance::Challenged { challenger, .. }, _) => {
                bail!("job {id} is disputed by {challenger}, not by this account ({me})")
            }
            // The challenge is not in a block yet.
            (Assurance::Unchecked { .. } | Assurance::CheckPending { .. }, _) => {}
            (other, _) => bail!(
                "job {id} ended without this challenge deciding it: {}",
                other.describe()
            ),
        }
        std::thread::sleep(POLL);
    }
}

/// Prints the report as text.
pub fn print_text(report: &ChallengeReport, out: &mut impl Write) -> Result<()> {
    let line = match report.outcome {
        Outcome::Agrees => "agrees: the committed result matches this re-execution".to_owned(),
        Outcome::Won => format!(
            "won after {} moves: the provider was slashed, the job refunded ({})",
            report.moves, report.phase
        ),
        Outcome::Lost => format!(
            "lost after {} moves: the bond is forfeited ({})",
            report.moves, report.phase
        ),
    };
    writeln!(out, "challenge of job {}: {line}", report.job)?;
    Ok(())
}
