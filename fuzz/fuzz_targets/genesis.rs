//! A genesis file's text. One that parses (and which the contract accepts) writes back to a
//! file that parses to the same genesis, with the same hash.
#![no_main]

use attest_chain::GenesisFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(genesis) = GenesisFile::parse(text) {
        let again = GenesisFile::parse(&genesis.to_json()).expect("a written genesis parses");
        assert_eq!(again.hash(), genesis.hash());
    }
});
