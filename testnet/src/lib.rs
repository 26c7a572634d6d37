//! The `attest` command-line tool: the commands, one module per group (`commands`: node,
//! testnet, client, demo and bench), the client library behind the client commands
//! (`client`), local testnets (genesis and config generation from a seed in `layout`, the
//! process launcher in `launcher` and `procs`, what the testnet commands print in `report`),
//! the demo (`demo`), the load generator (`bench`) and the HTTP client for the node API
//! (`http`, on ureq). It
//! drives `attest node` processes on loopback only and never touches the contract state except
//! through nodes. It sits above `attest-node`, whose library it uses.

pub mod bench;
pub mod challenge;
pub mod client;
pub mod commands;
pub mod demo;
pub mod http;
pub mod launcher;
pub mod layout;
pub mod membership;
pub mod procs;
pub mod report;
