//! `Signed<T>`: a body, its signer and an ed25519 signature over a domain-separated payload.
//!
//! The signed payload is `tag || 0x00 || encode(chain_id) || encode(body)`, where `tag` names
//! the kind of object and its version (see [`Signable::SIGNING_TAG`]) and `encode` is the
//! canonical encoding (so the chain id is a varint length and its bytes). A signature is
//! therefore valid for one kind of object on one chain only.

use serde::{Deserialize, Serialize};

use crate::encoding::{Canonical, encode};
use crate::error::SignatureError;
use crate::keys::{PublicKey, SecretKey, Signature, verify_batch};
use crate::types::ChainId;

/// A body that can be signed.
pub trait Signable: Serialize {
    /// The domain tag of signatures over this kind of body (`attest/sig/tx/v1`).
    const SIGNING_TAG: &'static str;
}

/// The bytes a signature over `body` on `chain` covers.
pub fn signing_payload<T: Signable>(chain: &ChainId, body: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(T::SIGNING_TAG.as_bytes());
    out.push(0);
    out.extend_from_slice(&encode(chain));
    out.extend_from_slice(&encode(body));
    out
}

/// A body with its signer and signature. Holding one proves nothing: call [`Signed::verify`],
/// which is the only way to get a [`Verified`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// Who signed.
    pub signer: PublicKey,
    /// The signature over [`signing_payload`] of the body.
    pub signature: Signature,
    /// What was signed.
    pub body: T,
}

impl<T: Signable> Signed<T> {
    /// Signs `body` for `chain` with `key`.
    pub fn sign(chain: &ChainId, key: &SecretKey, body: T) -> Self {
        let signature = key.sign(&signing_payload(chain, &body));
        Self {
            signer: key.public(),
            signature,
            body,
        }
    }

    /// Checks the signature (the rule of [`PublicKey::verify`]).
    pub fn verify(self, chain: &ChainId) -> Result<Verified<T>, SignatureError> {
        self.check(chain)?;
        Ok(Verified(self))
    }

    /// Checks the signature without consuming the object.
    pub fn check(&self, chain: &ChainId) -> Result<(), SignatureError> {
        if self
            .signer
            .verify(&signing_payload(chain, &self.body), &self.signature)
        {
            Ok(())
        } else {
            Err(self.invalid())
        }
    }

    /// Checks many signatures in batches ([`verify_batch`]); each answer is what
    /// [`Signed::verify`] gives for that item, in order.
    pub fn verify_all(
        chain: &ChainId,
        items: Vec<Self>,
    ) -> Vec<Result<Verified<T>, SignatureError>> {
        let ok = Self::check_all(chain, &items);
        items
            .into_iter()
            .zip(ok)
            .map(|(item, ok)| {
                if ok {
                    Ok(Verified(item))
                } else {
                    Err(item.invalid())
                }
            })
            .collect()
    }

    /// For each item, whether [`Signed::check`] passes, checked in batches.
    pub fn check_all(chain: &ChainId, items: &[Self]) -> Vec<bool> {
        let payloads: Vec<Vec<u8>> = items
            .iter()
            .map(|item| signing_payload(chain, &item.body))
            .collect();
        let batch: Vec<(PublicKey, &[u8], Signature)> = items
            .iter()
            .zip(&payloads)
            .map(|(item, payload)| (item.signer, payload.as_slice(), item.signature))
            .collect();
        verify_batch(&batch)
    }

    fn invalid(&self) -> SignatureError {
        SignatureError::Invalid {
            what: T::SIGNING_TAG,
            signer: self.signer.to_string(),
        }
    }
}

impl<T: Canonical + Signable> Canonical for Signed<T> {
    const NAME: &'static str = T::NAME;
    // Signer (32) and signature (64) precede the body.
    const MAX_ENCODED_LEN: usize = T::MAX_ENCODED_LEN + 96;
}

/// A signed object whose signature has been checked. Only [`Signed::verify`] builds one, so a
/// function that takes a `Verified<T>` cannot be handed an unchecked signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T>(Signed<T>);

impl<T> Verified<T> {
    /// The signer, whose signature was checked.
    pub fn signer(&self) -> &PublicKey {
        &self.0.signer
    }

    /// The body.
    pub fn body(&self) -> &T {
        &self.0.body
    }

    /// The signed object.
    pub fn signed(&self) -> &Signed<T> {
        &self.0
    }

    /// Gives the signed object back.
    pub fn into_signed(self) -> Signed<T> {
        self.0
    }
}
