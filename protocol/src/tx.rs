//! Transactions: what accounts sign to change the ledger.
//!
//! A transaction is a [`Tx`] (nonce, fee, one [`Action`]) inside a [`Signed`] whose signer is
//! the sending account. Its hash ([`tx_hash`]) covers the whole signed object.

use serde::{Deserialize, Serialize};

use crate::bounded::Bytes;
use crate::encoding::{Canonical, encode};
use crate::hash::{Hash, hash_tagged, tag};
use crate::keys::{AccountId, PublicKey, SecretKey, Signature};
use crate::limits::{MAX_ACTIVATION_BYTES, MAX_INPUT_BYTES, MAX_TX_BYTES};
use crate::merkle::MerkleProof;
use crate::signed::{Signable, Signed, signing_payload};
use crate::types::{Amount, ChainId, DeviceName, JobId, ModelId, Nonce, Round, TxHash};
use crate::vote::Vote;
use crate::workload::Execution;

/// A transaction body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tx {
    /// Must equal the sender's current nonce.
    pub nonce: Nonce,
    /// Paid to the block proposer; must be at least the chain's minimum fee.
    pub fee: Amount,
    /// What the transaction does.
    pub action: Action,
}

impl Signable for Tx {
    const SIGNING_TAG: &'static str = "attest/sig/tx/v1";
}

impl Canonical for Tx {
    const NAME: &'static str = "transaction";
    const MAX_ENCODED_LEN: usize = MAX_TX_BYTES - 96;
}

/// A signed transaction, as it travels and as blocks hold it.
pub type SignedTx = Signed<Tx>;

/// The hash of a signed transaction: `H("attest/tx/v1", encode(signed))`.
pub fn tx_hash(tx: &SignedTx) -> TxHash {
    hash_tagged(tag::TX, &[&encode(tx)]).into()
}

/// The one thing a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Move tokens to another account.
    Transfer(Transfer),
    /// Lock tokens as stake and bind a node's PeerId to the sender.
    Stake(Stake),
    /// Begin unbonding stake.
    Unstake(Unstake),
    /// Open a job and lock its escrow.
    OpenJob(OpenJob),
    /// The assigned provider's committed result.
    CommitResult(CommitResult),
    /// An assigned checker's verdict on a result.
    Verdict(Verdict),
    /// A move in a bisection dispute.
    Dispute(DisputeMove),
    /// Proof that a validator signed two conflicting votes.
    Equivocation(Box<EquivocationEvidence>),
}

/// Move `amount` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The receiving account.
    pub to: AccountId,
    /// How much.
    pub amount: Amount,
}

/// Lock `amount` of the sender's balance as stake, bound to the node whose identity key is
/// `node`. `node_signature` is the node key's signature over a [`NodeBinding`] naming the
/// sender, so nobody can claim another operator's node. `capability` declares the node's
/// device, which decides the models it may provide and check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stake {
    /// How much to add to the sender's stake.
    pub amount: Amount,
    /// The node's identity key (its libp2p PeerId).
    pub node: PublicKey,
    /// The node key's signature over `NodeBinding { account: sender }`.
    pub node_signature: Signature,
    /// The node's device; it replaces the one bound before.
    pub capability: Capability,
}

/// A node's device as the ledger knows it: its profile name and its memory. A model can run
/// on it iff the model's declared weights (`ModelSpec::weight_bytes`) fit in `memory_bytes`;
/// the contract assigns jobs and checks only to devices that can run them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// The device profile's name.
    pub device: DeviceName,
    /// Its memory in bytes.
    pub memory_bytes: u64,
}

impl Capability {
    /// Whether the model `id` (a catalogue model) fits on this device. Unknown models fit
    /// nowhere.
    pub fn can_run(&self, model: &str) -> bool {
        crate::workload::ModelSpec::find(model).is_ok_and(|m| m.weight_bytes() <= self.memory_bytes)
    }
}

impl Stake {
    /// A stake of `amount` for `account`, binding the node whose key is `node_key` and
    /// declaring its device.
    pub fn new(
        chain: &ChainId,
        node_key: &SecretKey,
        account: AccountId,
        amount: Amount,
        capability: Capability,
    ) -> Self {
        let node_signature = node_key.sign(&signing_payload(chain, &NodeBinding { account }));
        Self {
            amount,
            node: node_key.public(),
            node_signature,
            capability,
        }
    }

    /// Whether the node key really bound itself to `account` on `chain`.
    pub fn binding_is_valid(&self, chain: &ChainId, account: &AccountId) -> bool {
        let payload = signing_payload(chain, &NodeBinding { account: *account });
        self.node.verify(&payload, &self.node_signature)
    }
}

/// What a node key signs to say "this account operates me".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBinding {
    /// The operating account.
    pub account: AccountId,
}

impl Signable for NodeBinding {
    const SIGNING_TAG: &'static str = "attest/sig/node-binding/v1";
}

/// Start unbonding `amount` of the sender's stake. It stays slashable until released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unstake {
    /// How much to unbond.
    pub amount: Amount,
}

/// Open a job with `provider` on the terms of its advert, locking escrow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenJob {
    /// The model to run.
    pub model: ModelId,
    /// The input bytes (tokens are bytes).
    pub input: Bytes<MAX_INPUT_BYTES>,
    /// How many tokens to generate.
    pub max_tokens: u32,
    /// The provider chosen from its advert.
    pub provider: AccountId,
    /// The device named in the advert.
    pub device: DeviceName,
    /// The advert's price per generated token.
    pub price_per_token: Amount,
    /// Milliseconds of block time after the opening block's time by which the result must be
    /// committed.
    pub deadline_ms: u32,
    /// How the result is checked.
    pub check: CheckLevel,
}

/// The assurance a client buys for a job's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CheckLevel {
    /// Spot-checked at the chain's random rate (`check_probability_ppm`), and always while
    /// the provider is on probation.
    #[default]
    Random,
    /// Always checked by a drawn checker (the escrowed checker fee pays it).
    Always,
}

/// The assigned provider's result for a job.
///
/// It opens the trace's last leaf: the last step's activation ends with the output
/// accumulator, which must equal `output_hash`, so the result proves which output its trace
/// produced, and a checker's disagreement is always about that last leaf (see `Verdict`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitResult {
    /// The job.
    pub job: JobId,
    /// The output accumulator over the output bytes (`workload::output_hash`).
    pub output_hash: Hash,
    /// The Merkle root over the trace leaves.
    pub trace_root: Hash,
    /// How many steps (trace leaves) the execution had.
    pub step_count: u64,
    /// How many tokens were generated.
    pub tokens: u32,
    /// The last step's activation (hidden state, then the output accumulator).
    pub final_activation: Activation,
    /// Proof that `leaf_hash(step_count - 1, final_activation)` is the last leaf of
    /// `trace_root`.
    pub final_proof: MerkleProof,
}

impl CommitResult {
    /// The result of `execution` for `job`.
    pub fn from_execution(job: JobId, execution: &Execution) -> Self {
        Self {
            job,
            output_hash: execution.output_hash,
            trace_root: execution.trace_root,
            step_count: execution.step_count(),
            tokens: u32::try_from(execution.output.len()).expect("at most 1024 tokens"),
            final_activation: Activation::new(execution.final_activation.clone())
                .expect("activations fit MAX_ACTIVATION_BYTES"),
            final_proof: last_leaf_proof(execution),
        }
    }
}

/// The inclusion proof of an execution's last leaf: the one made with its root when it
/// proves the last leaf under `trace_root` (a check of one path), else built from the leaves.
pub fn last_leaf_proof(execution: &Execution) -> MerkleProof {
    let count = execution.step_count();
    let last = count.saturating_sub(1);
    match execution.leaves.last() {
        Some(leaf)
            if execution
                .final_proof
                .verify(&execution.trace_root, count, last, leaf) =>
        {
            execution.final_proof.clone()
        }
        _ => execution.tree().prove(last).unwrap_or_default(),
    }
}

/// A verdict on a committed result: the assigned checker's, or a challenge. Any other
/// account that may challenge (a staked account or the job's client) posts a `Disagree`
/// within the result's verdict window to open a dispute, locking the chain's challenge bond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The job checked.
    pub job: JobId,
    /// What re-execution found.
    pub outcome: VerdictOutcome,
}

/// What a checker found on re-execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerdictOutcome {
    /// The re-execution reached the committed last leaf (so the same output).
    Agree,
    /// The re-execution reached a different last leaf; this opens a dispute.
    Disagree {
        /// The checker's own trace root.
        trace_root: Hash,
        /// The checker's last leaf, which must differ from the provider's.
        final_leaf: Hash,
        /// Its proof against the checker's root.
        final_proof: MerkleProof,
    },
}

impl VerdictOutcome {
    /// A disagreement stating the checker's own `execution`.
    pub fn disagree(execution: &Execution) -> Self {
        Self::Disagree {
            trace_root: execution.trace_root,
            final_leaf: execution.leaves.last().copied().unwrap_or_default(),
            final_proof: last_leaf_proof(execution),
        }
    }
}

/// A move in the bisection dispute over a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeMove {
    /// The disputed job.
    pub job: JobId,
    /// The dispute round this move answers (from 0), so a late move cannot land in a later one.
    pub round: Round,
    /// The move.
    pub step: DisputeStep,
}

/// The kinds of dispute move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisputeStep {
    /// Open the leaf at `index` of the mover's committed trace, with its inclusion proof.
    Open {
        /// The step index the round asks for.
        index: u64,
        /// The mover's leaf at that index.
        leaf: Hash,
        /// Its proof against the mover's committed root.
        proof: MerkleProof,
    },
    /// Supply the activation before the first divergent step, so the contract can run that
    /// one step. It must hash to the leaf both parties agreed on.
    Witness {
        /// The activation of the step before the divergent one.
        activation: Activation,
    },
}

/// One step's activation (hidden state), as bytes: each `i8` lane as its two's-complement byte.
pub type Activation = Bytes<MAX_ACTIVATION_BYTES>;

/// Two votes by one validator for the same height, round and kind but different blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquivocationEvidence {
    /// One vote.
    pub first: Signed<Vote>,
    /// The conflicting vote.
    pub second: Signed<Vote>,
}

impl EquivocationEvidence {
    /// Whether the two votes conflict: same signer, height, round and kind, different blocks.
    /// Their signatures must be checked separately.
    pub fn is_conflicting(&self) -> bool {
        let (a, b) = (&self.first, &self.second);
        a.signer == b.signer
            && a.body.height == b.body.height
            && a.body.round == b.body.round
            && a.body.kind == b.body.kind
            && a.body.block != b.body.block
    }
}
