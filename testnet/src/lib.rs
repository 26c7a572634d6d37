//! The `attest` command-line tool's top layer: the binary (node, client and testnet commands)
//! and local testnets: genesis and config generation from a seed (`layout`), the process
//! launcher (`launcher`, `procs`), what the testnet commands print (`report`, `cli`) and the
//! node API's HTTP client (`http`, on ureq); the demo and the load generator follow. It
//! drives `attest node` processes on loopback only and never touches the contract state except
//! through nodes. It sits above `attest-node`, whose library it uses.

pub mod bench;
pub mod cli;
pub mod client;
pub mod client_cli;
pub mod demo;
pub mod http;
pub mod launcher;
pub mod layout;
pub mod procs;
pub mod report;
