//! A node's config file. One that parses and validates writes back (with its comments) to a
//! file that parses to the same config.
#![no_main]

use std::path::Path;

use attest_node::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("config.toml");
    if let Ok(config) = Config::parse(text, path) {
        let again =
            Config::parse(&config.to_commented_toml(), path).expect("a written config parses");
        assert_eq!(again, config);
    }
});
