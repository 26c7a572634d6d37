//! Prints the worked example of `docs/PROTOCOL.md` (a signed transfer) and the golden trace
//! roots, so the document can be regenerated and checked by hand.
//!
//! `cargo run -p attest-protocol --example worked_example`

use attest_protocol::encoding::encode;
use attest_protocol::tx::{Action, Transfer, Tx};
use attest_protocol::workload::{self, CATALOGUE, Job};
use attest_protocol::{Amount, ChainId, Nonce, SecretKey, Signed, signing_payload, tx_hash};

fn main() {
    let chain = ChainId::new("attest-docs").expect("valid chain id");
    let sender = SecretKey::from_seed([1; 32]);
    let recipient = SecretKey::from_seed([2; 32]).public();
    let body = Tx {
        nonce: Nonce(0),
        fee: Amount(1_000),
        action: Action::Transfer(Transfer {
            to: recipient,
            amount: Amount(5_000_000),
        }),
    };
    let signed = Signed::sign(&chain, &sender, body.clone());
    println!("sender seed      {}", hex::encode(sender.seed()));
    println!("sender key       {}", sender.public());
    println!("recipient key    {recipient}");
    println!("body bytes       {}", hex::encode(encode(&body)));
    println!(
        "signed payload   {}",
        hex::encode(signing_payload(&chain, &body))
    );
    println!("signature        {}", signed.signature);
    println!("signed tx bytes  {}", hex::encode(encode(&signed)));
    println!("tx hash          {}", tx_hash(&signed));
    for m in &CATALOGUE {
        let job = Job::new(m.id, b"attest golden vector", 8).expect("valid job");
        let exec = workload::execute(&job);
        println!(
            "golden {:<17} steps {:>5} output {:?} output hash {} root {}",
            m.id,
            exec.step_count(),
            String::from_utf8_lossy(&exec.output),
            exec.output_hash,
            exec.trace_root
        );
    }
}
