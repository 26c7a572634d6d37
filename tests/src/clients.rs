//! Client traffic: funded accounts sending signed transfers with sequential nonces.
//!
//! This module owns what a client knows and does: its key, the transfers it signed, and when
//! it sends them again. A client keeps at most a few transfers in flight; if its committed
//! nonce (read from the reference chain) stalls, it re-sends what is pending (a node that
//! took a transfer may have crashed before gossiping it). It never decides where a transfer
//! goes: the simulator picks a random live honest node.

use std::collections::BTreeMap;

use attest_contracts_sim::{Params, State};
use attest_protocol::tx::{Action, OpenJob, Transfer, Tx};
use attest_protocol::{
    AccountId, Amount, Bytes, ChainId, DeviceName, ModelId, Nonce, SecretKey, Signed, SignedTx,
};

use crate::rng::Rng;

/// Transfers a client keeps in flight at most.
const WINDOW: u64 = 4;
/// A client re-sends its pending transfers when its nonce has not moved for this long (ms).
const RESEND_AFTER_MS: u64 = 2_000;
/// Re-sends without progress after which a client replaces its pending transactions.
const GIVE_UP_AFTER_RESENDS: u32 = 3;

/// The balance each client starts with.
pub fn client_funds() -> Amount {
    Amount::tokens(1_000).expect("in range")
}

/// The key of client `c`.
pub fn client_key(c: usize) -> SecretKey {
    SecretKey::from_seed([200u8.wrapping_add(c as u8); 32])
}

#[derive(Debug)]
struct Client {
    key: SecretKey,
    next: u64,
    signed: BTreeMap<u64, SignedTx>,
    /// The committed nonce last seen and when it was first seen.
    seen: (u64, u64),
    /// Re-sends since the committed nonce last moved.
    resends: u32,
}

/// All clients of a run.
#[derive(Debug)]
pub struct Clients {
    chain: ChainId,
    clients: Vec<Client>,
    submitted: u64,
    jobs_opened: u64,
}

impl Clients {
    /// `n` clients on `chain`.
    pub fn new(chain: ChainId, n: usize) -> Self {
        let clients = (0..n)
            .map(|c| Client {
                key: client_key(c),
                next: 0,
                signed: BTreeMap::new(),
                seen: (0, 0),
                resends: 0,
            })
            .collect();
        Self {
            chain,
            clients,
            submitted: 0,
            jobs_opened: 0,
        }
    }

    /// The client accounts.
    pub fn accounts(&self) -> Vec<AccountId> {
        self.clients.iter().map(|c| c.key.public()).collect()
    }

    /// Transfers signed so far.
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Jobs opened so far.
    pub fn jobs_opened(&self) -> u64 {
        self.jobs_opened
    }

    /// One client's turn at `now`, given the committed `state`: the transactions to submit
    /// (a new transfer, or the pending ones again if its nonce stalled).
    pub fn tick(&mut self, now: u64, rng: &mut Rng, state: &State) -> Vec<SignedTx> {
        if self.clients.is_empty() {
            return Vec::new();
        }
        let accounts = self.accounts();
        let c = rng.index(self.clients.len());
        self.turn(
            c,
            now,
            state,
            |rng_c| {
                // Never to itself: a refused transfer would stall the client's nonces.
                let to = if accounts.len() > 1 {
                    accounts[(c + 1 + rng_c.index(accounts.len() - 1)) % accounts.len()]
                } else {
                    SecretKey::from_seed([199; 32]).public()
                };
                Action::Transfer(Transfer {
                    to,
                    amount: Amount(rng_c.range(1, 1_000_000)),
                })
            },
            rng,
        )
    }

    /// One client's turn to open a job on the terms `quote` gives it (provider, device, price
    /// per token; `None`: no provider, no job), as [`Clients::tick`] does for transfers.
    /// Returns the transactions to submit (none if the client's window is full).
    pub fn tick_job(
        &mut self,
        now: u64,
        rng: &mut Rng,
        state: &State,
        quote: impl FnOnce(AccountId) -> Option<(AccountId, DeviceName, Amount)>,
        jobs: &crate::scenario::JobTraffic,
    ) -> Vec<SignedTx> {
        if self.clients.is_empty() {
            return Vec::new();
        }
        let c = rng.index(self.clients.len());
        let Some((provider, device, price)) = quote(self.clients[c].key.public()) else {
            return Vec::new();
        };
        let before = self.clients[c].next;
        let out = self.turn(
            c,
            now,
            state,
            |r| {
                let len = r.range(jobs.input_len.0, jobs.input_len.1 + 1);
                let input: Vec<u8> = (0..len).map(|_| b'a' + r.below(26) as u8).collect();
                Action::OpenJob(OpenJob {
                    model: ModelId::new(jobs.model).expect("catalogue model"),
                    input: Bytes::new(input).expect("within the input limit"),
                    max_tokens: jobs.max_tokens,
                    provider,
                    device,
                    price_per_token: price,
                    deadline_ms: jobs.deadline_ms,
                    check: jobs.check,
                })
            },
            rng,
        );
        if self.clients[c].next > before {
            self.jobs_opened += 1;
        }
        out
    }

    /// Client `c`'s turn: re-send its pending transactions if its nonce stalled, else sign
    /// `make`'s action at its next nonce if its window has room.
    fn turn(
        &mut self,
        c: usize,
        now: u64,
        state: &State,
        make: impl FnOnce(&mut Rng) -> Action,
        rng: &mut Rng,
    ) -> Vec<SignedTx> {
        let client = &mut self.clients[c];
        let committed = state.account(&client.key.public()).nonce.0;
        client.next = client.next.max(committed);
        client.signed.retain(|n, _| *n >= committed);
        if committed != client.seen.0 {
            client.seen = (committed, now);
            client.resends = 0;
        }
        if client.next > committed && now >= client.seen.1 + RESEND_AFTER_MS {
            client.seen.1 = now;
            client.resends += 1;
            // Still stuck after several re-sends: the contract refuses the transaction at
            // the committed nonce (a job whose provider was banned meanwhile). Replace the
            // pending ones with transfers to a sink so the client's nonces move again.
            if client.resends >= GIVE_UP_AFTER_RESENDS {
                client.resends = 0;
                let sink = SecretKey::from_seed([199; 32]).public();
                for (n, tx) in client.signed.iter_mut() {
                    let body = Tx {
                        nonce: Nonce(*n),
                        fee: Params::default().min_fee,
                        action: Action::Transfer(Transfer {
                            to: sink,
                            amount: Amount(1),
                        }),
                    };
                    *tx = Signed::sign(&self.chain, &client.key, body);
                }
            }
            return client.signed.values().cloned().collect();
        }
        if client.next - committed >= WINDOW {
            return Vec::new();
        }
        let tx = Tx {
            nonce: Nonce(client.next),
            fee: Params::default().min_fee,
            action: make(rng),
        };
        let signed = Signed::sign(&self.chain, &client.key, tx);
        client.signed.insert(client.next, signed.clone());
        client.next += 1;
        self.submitted += 1;
        vec![signed]
    }
}
