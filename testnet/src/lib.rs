//! Attest local testnets: genesis and config generation, the process launcher and the load
//! generator. It drives `attest` node processes on loopback only and never touches the
//! contract state directly. Its commands arrive with the surface issue; it holds nothing yet.
