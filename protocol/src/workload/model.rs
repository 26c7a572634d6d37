//! The model catalogue.
//!
//! Declared figures (parameters, layers, bytes per parameter) are those of well-known open
//! models of the same size; the node's simulated accelerator times jobs from them. The real
//! computation is a small stand-in of `hidden` lanes with the same number of layers, so a
//! trace has one step per (position, layer) like the model it stands for.

use super::WorkloadError;

/// The widest stand-in; activations of every catalogue model fit in this many bytes.
pub(crate) const MAX_HIDDEN: usize = 128;

/// One catalogue model.
#[derive(Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// The model id used on the ledger and in adverts.
    pub id: &'static str,
    /// What the model stands for.
    pub description: &'static str,
    /// Declared parameter count (for simulated timing).
    pub params: u64,
    /// Declared layer count; also the stand-in's layer count.
    pub layers: u32,
    /// Declared bytes per parameter of the served weights (2 for 16-bit).
    pub bytes_per_param: u32,
    /// Declared key-value heads per layer (grouped-query attention), for the KV cache.
    pub kv_heads: u32,
    /// Declared size of one attention head, in lanes, for the KV cache.
    pub head_dim: u32,
    /// Lanes of the stand-in's hidden state (bytes per activation).
    pub hidden: usize,
    /// The requantization shift of the stand-in's layers.
    pub shift: u32,
}

/// The models every node knows. Order is part of the protocol only through ids, never indices.
pub const CATALOGUE: [ModelSpec; 3] = [
    ModelSpec {
        id: "attest-tiny-1b",
        description: "1.1B parameters, 22 layers (TinyLlama-1.1B class)",
        params: 1_100_000_000,
        layers: 22,
        bytes_per_param: 2,
        // TinyLlama-1.1B config: 32 query heads, 4 key-value heads, hidden 2048.
        kv_heads: 4,
        head_dim: 64,
        hidden: 32,
        shift: 10,
    },
    ModelSpec {
        id: "attest-base-8b",
        description: "8.0B parameters, 32 layers (Llama-3-8B class)",
        params: 8_030_000_000,
        layers: 32,
        bytes_per_param: 2,
        // Llama-3-8B config: 32 query heads, 8 key-value heads, hidden 4096.
        kv_heads: 8,
        head_dim: 128,
        hidden: 64,
        shift: 10,
    },
    ModelSpec {
        id: "attest-large-70b",
        description: "70.6B parameters, 80 layers (Llama-3-70B class)",
        params: 70_550_000_000,
        layers: 80,
        bytes_per_param: 2,
        // Llama-3-70B config: 64 query heads, 8 key-value heads, hidden 8192.
        kv_heads: 8,
        head_dim: 128,
        hidden: 128,
        shift: 11,
    },
];

const _: () = {
    let mut i = 0;
    while i < CATALOGUE.len() {
        assert!(CATALOGUE[i].hidden <= MAX_HIDDEN);
        assert!(CATALOGUE[i].hidden + super::ACC_BYTES <= crate::limits::MAX_ACTIVATION_BYTES);
        assert!(CATALOGUE[i].layers > 0 && CATALOGUE[i].shift > 0);
        i += 1;
    }
};

impl ModelSpec {
    /// The catalogue entry for `id`.
    pub fn find(id: &str) -> Result<&'static ModelSpec, WorkloadError> {
        CATALOGUE
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| WorkloadError::UnknownModel(id.into()))
    }

    /// Bytes of declared weights: what a decode step streams from memory.
    pub fn weight_bytes(&self) -> u64 {
        self.params * u64::from(self.bytes_per_param)
    }

    /// Bytes of KV cache one position holds: a key and a value of `head_dim` lanes for each
    /// key-value head of each layer, at the weights' width (a 16-bit cache for 16-bit weights).
    pub fn kv_bytes_per_position(&self) -> u64 {
        2 * u64::from(self.layers)
            * u64::from(self.kv_heads)
            * u64::from(self.head_dim)
            * u64::from(self.bytes_per_param)
    }
}

/// The catalogue's ids, comma-separated, for error messages.
pub(crate) fn known_ids() -> String {
    CATALOGUE
        .iter()
        .map(|m| m.id)
        .collect::<Vec<_>>()
        .join(", ")
}
