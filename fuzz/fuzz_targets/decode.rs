//! Every binary decoder of a peer message or a stored record: the first byte picks one (see
//! `attest_fuzz::DECODERS`), the rest is its input. What decodes must be canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&which, bytes)) = data.split_first() {
        if usize::from(which) == attest_fuzz::DECODERS.len() {
            attest_fuzz::decode_state_proof(bytes);
        } else {
            attest_fuzz::decode(which, bytes);
        }
    }
});
