//! Client traffic: funded accounts sending signed transfers with sequential nonces.
//!
//! This module owns what a client knows and does: its key, the transfers it signed, and when
//! it sends them again. A client keeps at most a few transfers in flight; if its committed
//! nonce (read from the reference chain) stalls, it re-sends what is pending (a node that
//! took a transfer may have crashed before gossiping it). It never decides where a transfer
//! goes: the simulator picks a random live honest node.

use std::collections::BTreeMap;

use attest_contracts_sim::{Params, State};
use attest_protocol::tx::{Action, Transfer, Tx};
use attest_protocol::{AccountId, Amount, ChainId, Nonce, SecretKey, Signed, SignedTx};

use crate::rng::Rng;

/// Transfers a client keeps in flight at most.
const WINDOW: u64 = 4;
/// A client re-sends its pending transfers when its nonce has not moved for this long (ms).
const RESEND_AFTER_MS: u64 = 2_000;

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
}

/// All clients of a run.
#[derive(Debug)]
pub struct Clients {
    chain: ChainId,
    clients: Vec<Client>,
    submitted: u64,
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
            })
            .collect();
        Self {
            chain,
            clients,
            submitted: 0,
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

    /// One client's turn at `now`, given the committed `state`: the transactions to submit
    /// (a new transfer, or the pending ones again if its nonce stalled).
    pub fn tick(&mut self, now: u64, rng: &mut Rng, state: &State) -> Vec<SignedTx> {
        if self.clients.is_empty() {
            return Vec::new();
        }
        let accounts = self.accounts();
        let c = rng.index(self.clients.len());
        let client = &mut self.clients[c];
        let committed = state.account(&client.key.public()).nonce.0;
        client.next = client.next.max(committed);
        client.signed.retain(|n, _| *n >= committed);
        if committed != client.seen.0 {
            client.seen = (committed, now);
        }
        if client.next > committed && now >= client.seen.1 + RESEND_AFTER_MS {
            client.seen.1 = now;
            return client.signed.values().cloned().collect();
        }
        if client.next - committed >= WINDOW {
            return Vec::new();
        }
        // Never to itself: a refused transfer would stall the client's nonces.
        let to = if accounts.len() > 1 {
            accounts[(c + 1 + rng.index(accounts.len() - 1)) % accounts.len()]
        } else {
            SecretKey::from_seed([199; 32]).public()
        };
        let tx = Tx {
            nonce: Nonce(client.next),
            fee: Params::default().min_fee,
            action: Action::Transfer(Transfer {
                to,
                amount: Amount(rng.range(1, 1_000_000)),
            }),
        };
        let signed = Signed::sign(&self.chain, &client.key, tx);
        client.signed.insert(client.next, signed.clone());
        client.next += 1;
        self.submitted += 1;
        vec![signed]
    }
}
