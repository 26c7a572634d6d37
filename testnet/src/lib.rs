//! The `attest` command-line tool's top layer: the binary (node, client and testnet commands)
//! and, as the surface grows, local testnets (genesis and config generation, the process
//! launcher), the demo and the load generator. It drives `attest node` processes on loopback
//! only and never touches the contract state except through nodes. It sits above
//! `attest-node`, whose library it uses.
