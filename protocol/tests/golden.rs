//! Golden vectors: the worked example of `docs/PROTOCOL.md` and one trace root per model.
//! If one of these fails, an encoding, tag or the workload changed: that is a protocol
//! change, which needs a version bump and a new document, not a new constant.

use attest_protocol::encoding::encode;
use attest_protocol::tx::{Action, Transfer, Tx};
use attest_protocol::workload::{self, CATALOGUE, Job};
use attest_protocol::{Amount, Canonical, ChainId, Nonce, SecretKey, Signed, signing_payload};
use attest_protocol::{SignedTx, tx_hash};

const SENDER_KEY: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
const RECIPIENT_KEY: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
const BODY: &str =
    "00e807008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394c096b102";
const PAYLOAD: &str = "6174746573742f7369672f74782f7631000b6174746573742d646f637300e807008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394c096b102";
const SIGNATURE: &str = "abe92c796f7445d118899403c304a3f9f61382af7ffd13dabc8091a4a66ef407fcbbde0e57d12d91c434520277485150292526f334b11ba4d66e92b139ea7704";
const SIGNED_TX: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5cabe92c796f7445d118899403c304a3f9f61382af7ffd13dabc8091a4a66ef407fcbbde0e57d12d91c434520277485150292526f334b11ba4d66e92b139ea770400e807008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394c096b102";
const TX_HASH: &str = "b16b9c7e9b780f03a27b2eb20f2b53cba8429c12d27adb94179001d803641eff";

/// `(model, steps, output, output hash, trace root)` of input `attest golden vector`, 8 tokens.
const GOLDEN_TRACES: [(&str, u64, &str, &str, &str); 3] = [
    (
        "attest-tiny-1b",
        616,
        "meUY]51e",
        "2fecf2289f3293b42ed79b4e267650d330fb79f5a12fcd2af0d5a6be7f0fcf10",
        "2d584e83a5384624da2ddee57ca5e6d173f66825996fae93ef3563c4879d9c58",
    ),
    (
        "attest-base-8b",
        896,
        "fd=yX=^V",
        "3220568eb7017d2278270f036c71d379836ca9b4806727c797d9a0d93d2175a6",
        "04f62a2ff1efe2ee3805b034654786560a625621ea7c7fa9b036773d6a098cf5",
    ),
    (
        "attest-large-70b",
        2240,
        "pR;t$:>K",
        "230c14adc8bb249992a72f14e772a0ca83de7d616dd0ebc5743c18048261374d",
        "29ead6d01e08101c0a0057c36ca708ecaeb152bf475a461a89e5f2ec847cfc8f",
    ),
];

fn example() -> (ChainId, Tx, SignedTx) {
    let chain = ChainId::new("attest-docs").unwrap();
    let sender = SecretKey::from_seed([1; 32]);
    let body = Tx {
        nonce: Nonce(0),
        fee: Amount(1_000),
        action: Action::Transfer(Transfer {
            to: SecretKey::from_seed([2; 32]).public(),
            amount: Amount(5_000_000),
        }),
    };
    let signed = Signed::sign(&chain, &sender, body.clone());
    (chain, body, signed)
}

#[test]
fn worked_example_matches_the_pinned_bytes() {
    let (chain, body, signed) = example();
    assert_eq!(signed.signer.to_string(), SENDER_KEY);
    assert_eq!(
        SecretKey::from_seed([2; 32]).public().to_string(),
        RECIPIENT_KEY
    );
    assert_eq!(hex::encode(encode(&body)), BODY);
    assert_eq!(hex::encode(signing_payload(&chain, &body)), PAYLOAD);
    assert_eq!(signed.signature.to_string(), SIGNATURE);
    assert_eq!(hex::encode(encode(&signed)), SIGNED_TX);
    assert_eq!(tx_hash(&signed).to_string(), TX_HASH);
}

#[test]
fn worked_example_decodes_and_verifies_from_its_bytes() {
    let (chain, body, _) = example();
    let signed = SignedTx::decode(&hex::decode(SIGNED_TX).unwrap()).unwrap();
    assert_eq!(signed.body, body);
    signed.check(&chain).unwrap();
    assert!(
        signed
            .check(&ChainId::new("attest-other").unwrap())
            .is_err()
    );
}

#[test]
fn the_document_shows_the_pinned_example_and_roots() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    // The document wraps long hex over several lines; compare without whitespace.
    let flat: String = doc.split_whitespace().collect();
    for (name, value) in [
        ("sender key", SENDER_KEY),
        ("recipient key", RECIPIENT_KEY),
        ("body", BODY),
        ("payload", PAYLOAD),
        ("signature", SIGNATURE),
        ("signed tx", SIGNED_TX),
        ("tx hash", TX_HASH),
    ] {
        assert!(
            flat.contains(value),
            "docs/PROTOCOL.md lacks the {name} {value}"
        );
    }
    for (_, _, _, output_hash, root) in GOLDEN_TRACES {
        assert!(
            flat.contains(output_hash),
            "docs/PROTOCOL.md lacks the output hash {output_hash}"
        );
        assert!(
            flat.contains(root),
            "docs/PROTOCOL.md lacks the trace root {root}"
        );
    }
}

#[test]
fn golden_trace_roots_per_model() {
    assert_eq!(
        GOLDEN_TRACES.len(),
        CATALOGUE.len(),
        "one golden vector per catalogue model"
    );
    for (model, steps, output, output_hash, root) in GOLDEN_TRACES {
        let job = Job::new(model, b"attest golden vector", 8).unwrap();
        let exec = workload::execute(&job);
        assert_eq!(exec.step_count(), steps, "{model} steps");
        assert_eq!(
            String::from_utf8(exec.output.clone()).unwrap(),
            output,
            "{model} output"
        );
        assert_eq!(exec.trace_root.to_string(), root, "{model} trace root");
        assert_eq!(
            exec.output_hash.to_string(),
            output_hash,
            "{model} output hash"
        );
        assert_eq!(exec.output_hash, workload::output_hash(output.as_bytes()));
        assert_eq!(
            workload::accumulator(&exec.final_activation),
            Some(exec.output_hash)
        );
    }
}

/// `hash_tagged` hashes short inputs from a buffer on the stack and long ones incrementally:
/// both are `blake3(tag || 0 || parts...)`, on either side of the switch and however the
/// input is cut into parts.
#[test]
fn tagged_hashes_are_blake3_of_the_prefixed_bytes_at_every_length() {
    use attest_protocol::hash::{hash_tagged, tag};
    let data: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
    for len in 0..data.len() {
        let bytes = &data[..len];
        let mut prefixed = tag::SMT_NODE.as_bytes().to_vec();
        prefixed.push(0);
        prefixed.extend_from_slice(bytes);
        let expected = *blake3::hash(&prefixed).as_bytes();
        let cut = len / 3;
        assert_eq!(hash_tagged(tag::SMT_NODE, &[bytes]).0, expected, "{len}");
        assert_eq!(
            hash_tagged(tag::SMT_NODE, &[&bytes[..cut], &[], &bytes[cut..]]).0,
            expected,
            "{len} in parts"
        );
    }
}
