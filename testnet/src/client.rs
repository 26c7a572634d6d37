//! The client commands: `attest submit`, `attest job`, `attest market`, `attest ledger` and
//! `attest audit`. They talk to a node's HTTP API (by default the local testnet's first node)
//! and verify what matters themselves: a job's output against the ledger's hash, and the
//! whole chain in an audit.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use attest_chain::audit::{self, AuditRange};
use attest_core::store::{GenesisId, Store};
use attest_node::sled_store::SledStore;
use attest_protocol::tx::{Action, OpenJob, Tx};
use attest_protocol::{
    Amount, Block, Bytes, Canonical, CommitCertificate, DeviceName, Height, ModelId, Nonce,
    SecretKey, Signed,
};

use crate::http::Conn;

/// The local testnet's first node: where client commands go unless `--node` says otherwise.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:26601";
/// The local testnet's genesis and first client key, the defaults of `audit` and `submit`.
pub const DEFAULT_GENESIS: &str = ".attest/testnet/genesis.json";
/// The first funded client of the local testnet.
pub const DEFAULT_KEY: &str = ".attest/testnet/clients/client-0.key";

/// Where to find the node: `http://HOST:PORT` (loopback by default).
fn node_addr(url: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("node URL {url:?} must start with http://"))?;
    let host = rest.trim_end_matches('/');
    host.to_socket_addrs()
        .with_context(|| format!("node URL {url:?}: not HOST:PORT"))?
        .next()
        .ok_or_else(|| anyhow!("node URL {url:?} resolves to no address"))
}

/// A node's API: JSON in, JSON out, with the node's `{error, detail}` turned into an error
/// that names the request.
#[derive(Debug)]
pub struct Api {
    url: String,
    conn: Conn,
}

impl Api {
    /// A client of the node at `url`.
    pub fn new(url: &str) -> Result<Self> {
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            conn: Conn::new(node_addr(url)?),
        })
    }

    fn call(&mut self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let body = body.map(Value::to_string);
        let reply = self
            .conn
            .request(method, path, body.as_deref())
            .with_context(|| format!("node {} unreachable", self.url))?;
        if (200..300).contains(&reply.status) {
            return Ok(reply.json);
        }
        let code = reply.json["error"].as_str().unwrap_or("error");
        let detail = reply.json["detail"].as_str().unwrap_or("");
        bail!("{method} {path}: {} {code}: {detail}", reply.status)
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> Result<Value> {
        self.call("GET", path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&mut self, path: &str, body: &Value) -> Result<Value> {
        self.call("POST", path, Some(body))
    }

    /// The committed block at `height` with its certificate, decoded from canonical bytes;
    /// `None` above the node's height.
    pub fn raw_block(&mut self, height: Height) -> Result<Option<(Block, CommitCertificate)>> {
        let v = match self.get(&format!("/v1/blocks/{}/raw", height.0)) {
            Ok(v) => v,
            Err(e) if e.to_string().contains("404 not_found") => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes = |field: &str| -> Result<Vec<u8>> {
            let text = v[field]
                .as_str()
                .ok_or_else(|| anyhow!("block {}: no {field}", height.0))?;
            hex::decode(text).with_context(|| format!("block {}: {field} is not hex", height.0))
        };
        let block =
            Block::decode(&bytes("block")?).map_err(|e| anyhow!("block {}: {e}", height.0))?;
        let cert = CommitCertificate::decode(&bytes("certificate")?)
            .map_err(|e| anyhow!("certificate {}: {e}", height.0))?;
        Ok(Some((block, cert)))
    }
}

/// How long an admitted job may stay off the ledger before the client gives up on it. A
/// block commits an admitted transaction within a few blocks (well under a second on a
/// local testnet) unless the contract refuses it at block time.
const NEVER_COMMITTED: Duration = Duration::from_secs(20);

/// Reads `TEXT` or `@FILE`.
pub fn read_input(input: &str) -> Result<Vec<u8>> {
    match input.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("input file {path}")),
        None => Ok(input.as_bytes().to_vec()),
    }
}

/// What `attest submit` needs.
#[derive(Debug, Clone)]
pub struct SubmitArgs {
    /// The node URL.
    pub node: String,
    /// The client key file.
    pub key: PathBuf,
    /// The model.
    pub model: String,
    /// The input bytes.
    pub input: Vec<u8>,
    /// Tokens to generate.
    pub max_tokens: u32,
    /// The highest price per token the client pays, in micro-units.
    pub max_price: u64,
    /// Blocks the provider has to commit.
    pub deadline_blocks: u32,
    /// Wait until the output is verified (`result`) or the job is final (`settled`).
    pub wait: Wait,
    /// Give up waiting after this long.
    pub timeout: Duration,
    /// Ask this provider (account hex) on the terms of its advert instead of the gateway's
    /// pick; the gateway picks if it has no advert from it.
    pub provider: Option<String>,
}

/// How long `attest submit` follows its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Wait {
    /// Until the output is verified against the ledger.
    Result,
    /// Until the job settles (or is refunded).
    Settled,
}

/// Opens a job through the node (its gateway picks the provider from its advert book), then
/// follows it through each stage, printing a line per stage unless `json`, and returns the
/// final record (schema `attest.submit/1`).
pub fn submit(args: &SubmitArgs, json: bool, out: &mut impl Write) -> Result<Value> {
    // Refuse what the contract would refuse, before asking anyone.
    attest_protocol::workload::Job::new(&args.model, &args.input, args.max_tokens)
        .with_context(|| format!("job for model {}", args.model))?;
    let mut opener = Opener::new(&args.node, &args.key)?;
    let opened = opener.open(args)?;
    // On a terminal a spinner line shows the job is alive between stages; stage lines clear
    // it first. Redirected output gets plain lines only.
    let spin = !json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let say = |out: &mut dyn Write, line: String| -> Result<()> {
        if !json {
            let clear = if spin { "\r\x1b[K" } else { "" };
            writeln!(out, "{clear}{line}")?;
            out.flush()?;
        }
        Ok(())
    };
    say(out, format!("submitted job {}", opened.job))?;
    say(
        out,
        format!(
            "assigned to provider {} on {} at {} micro-units per token",
            opened.provider, opened.device, opened.price_per_token
        ),
    )?;
    follow(&mut opener.api, &opened.job, args, out, &say, spin)
}

/// A job the node admitted to its mempool: not yet on the ledger.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The job id: the hash of its `OpenJob` transaction.
    pub job: String,
    /// The provider it names (account hex).
    pub provider: String,
    /// The provider's device.
    pub device: String,
    /// The agreed price per token, in micro-units.
    pub price_per_token: u64,
}

/// One client key opening jobs through one gateway, without waiting for them: it keeps the
/// key's next nonce locally, so jobs go out back to back, each with the nonce after the last
/// admitted one (the mempool holds a sender's transactions up to
/// `attest_core::mempool::MAX_NONCE_AHEAD` past its committed nonce, and they commit in
/// order). `attest submit` opens its one job with it; the load generator opens many.
#[derive(Debug)]
pub struct Opener {
    api: Api,
    key: SecretKey,
    chain: attest_protocol::ChainId,
    next_nonce: u64,
}

impl Opener {
    /// A session for the key in `key_file` at the node `node`: reads the chain id and the
    /// account's committed nonce.
    pub fn new(node: &str, key_file: &Path) -> Result<Self> {
        let key = attest_node::keyfile::read(key_file)?;
        let mut api = Api::new(node)?;
        let chain = chain_of(&mut api)?;
        let mut opener = Self {
            api,
            key,
            chain,
            next_nonce: 0,
        };
        opener.resync()?;
        Ok(opener)
    }

    /// The node's API, for following what was opened.
    pub fn api(&mut self) -> &mut Api {
        &mut self.api
    }

    /// Takes the next nonce from the ledger again: after a refusal that says the local one
    /// is wrong, or when a transaction that was admitted never committed (it left a gap that
    /// stalls every later one).
    pub fn resync(&mut self) -> Result<()> {
        let client = self.key.public();
        let account = self.api.get(&format!("/v1/accounts/{client}"))?;
        self.next_nonce = account["nonce"].as_u64().unwrap_or(0);
        Ok(())
    }

    /// Quotes (or takes `args.provider`'s advert), signs an `OpenJob` with the next nonce and
    /// posts it; returns once the node has admitted it. `args.wait` and `args.timeout` are not
    /// used: nothing is followed. On refusal the nonce is not used up; a nonce the node says
    /// is already taken moves the local one on (`stale_nonce` from the ledger, `nonce_taken`
    /// past a waiting transaction of this key), and the error is returned for the caller to
    /// retry.
    pub fn open(&mut self, args: &SubmitArgs) -> Result<Opened> {
        let client = self.key.public();
        let chosen = match &args.provider {
            Some(p) => self.api.get("/v1/adverts")?["adverts"]
                .as_array()
                .and_then(|a| a.iter().find(|ad| ad["provider"] == p.as_str()).cloned()),
            None => None,
        };
        let quote = match chosen {
            Some(advert) => advert,
            None => self.api.post(
                "/v1/quote",
                &json!({ "model": args.model, "max_price_per_token": args.max_price,
                         "client": client.to_string() }),
            )?,
        };
        let provider = quote["provider"].as_str().unwrap_or_default().to_owned();
        let device = quote["device"].as_str().unwrap_or_default().to_owned();
        let price = quote["price_per_token"].as_u64().unwrap_or(u64::MAX);
        let open = OpenJob {
            model: ModelId::new(&args.model).map_err(|e| anyhow!("model: {e}"))?,
            input: Bytes::new(args.input.clone()).map_err(|_| anyhow!("input too long"))?,
            max_tokens: args.max_tokens,
            provider: provider
                .parse()
                .map_err(|e| anyhow!("quote's provider: {e:?}"))?,
            device: DeviceName::new(&device).map_err(|e| anyhow!("quote's device: {e}"))?,
            price_per_token: Amount(price),
            deadline_blocks: args.deadline_blocks,
        };
        let tx = Tx {
            nonce: Nonce(self.next_nonce),
            fee: attest_contracts_sim::Params::default().min_fee,
            action: Action::OpenJob(open),
        };
        let signed = Signed::sign(&self.chain, &self.key, tx);
        let job = match self
            .api
            .post("/v1/txs", &json!({ "tx": hex::encode(signed.encode()) }))
        {
            Ok(answer) => answer["hash"]
                .as_str()
                .or_else(|| answer["tx_hash"].as_str())
                .ok_or_else(|| anyhow!("the node answered no transaction hash: {answer}"))?
                .to_owned(),
            // The connection dropped after the node admitted it and the post was sent again
            // (see `Conn::request`): it is in, under the hash it always had.
            Err(e) if format!("{e:#}").contains("duplicate") => {
                attest_protocol::tx_hash(&signed).to_string()
            }
            Err(e) => {
                let text = format!("{e:#}");
                if text.contains("stale_nonce") {
                    self.resync()?;
                } else if text.contains("nonce_taken") {
                    self.next_nonce += 1;
                }
                return Err(e);
            }
        };
        self.next_nonce += 1;
        Ok(Opened {
            job,
            provider,
            device,
            price_per_token: price,
        })
    }
}

/// The chain id the node serves (from its status).
fn chain_of(api: &mut Api) -> Result<attest_protocol::ChainId> {
    let status = api.get("/v1/status")?;
    let id = status["chain_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the node's status names no chain_id"))?;
    attest_protocol::ChainId::new(id).map_err(|e| anyhow!("chain id {id:?}: {e}"))
}

type Say<'a> = dyn Fn(&mut dyn Write, String) -> Result<()> + 'a;

/// Polls the job until the wanted stage, printing each stage once.
fn follow(
    api: &mut Api,
    job: &str,
    args: &SubmitArgs,
    out: &mut impl Write,
    say: &Say<'_>,
    spin: bool,
) -> Result<Value> {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
    let mut tick = 0usize;
    let started = Instant::now();
    let mut seen: Vec<&'static str> = Vec::new();
    let mut note = |out: &mut dyn Write, stage: &'static str, line: String| -> Result<()> {
        if !seen.contains(&stage) {
            seen.push(stage);
            say(out, line)?;
        }
        Ok(())
    };
    loop {
        if started.elapsed() > args.timeout {
            bail!(
                "job {job} did not reach {:?} within {:?}",
                args.wait,
                args.timeout
            );
        }
        let view = match api.get(&format!("/v1/jobs/{job}")) {
            Ok(v) => v,
            Err(e) if e.to_string().contains("404") => {
                // Admitted but never committed: a block refused it (its provider was banned or
                // ran out of stake meanwhile), and no block will take it now.
                if started.elapsed() > NEVER_COMMITTED {
                    bail!(
                        "job {job} was admitted but not committed within {NEVER_COMMITTED:?}: \
                         refused_by_contract at block time (provider no longer eligible?)"
                    );
                }
                std::thread::sleep(Duration::from_millis(150));
                continue;
            }
            Err(e) => return Err(e),
        };
        let phase = view["phase"].as_str().unwrap_or("").to_owned();
        note(
            out,
            "open",
            format!("escrow locked at height {}", view["opened_at"]),
        )?;
        if let Some(h) = view["result"]["committed_at"].as_u64() {
            note(out, "result", format!("result committed at height {h}"))?;
        }
        if let Some(checker) = view["check"]["checker"].as_str() {
            note(out, "check", format!("check assigned to {checker}"))?;
        }
        if let Some(agree) = view["timeline"]["verdict"]["agree"].as_bool() {
            let v = if agree {
                "agree"
            } else {
                "disagree: dispute opened"
            };
            note(out, "verdict", format!("verdict: {v}"))?;
        }
        let output = if view["output_held"].as_bool() == Some(true) {
            let o = api.get(&format!("/v1/jobs/{job}/output"))?;
            note(
                out,
                "output",
                format!(
                    "output verified against the ledger hash {}",
                    o["output_hash"].as_str().unwrap_or("")
                ),
            )?;
            Some(o)
        } else {
            None
        };
        let fin = phase == "settled" || phase == "refunded";
        let done = match args.wait {
            // A final job whose output this node does not hold (it was not the gateway, or
            // the provider never answered) ends the wait too: there is nothing more to come.
            Wait::Result => output.is_some() || fin,
            Wait::Settled => fin,
        };
        if done {
            note(out, "final", format!("job is {phase}"))?;
            let text = output
                .as_ref()
                .and_then(|o| o["output"].as_str())
                .map(str::to_owned);
            if let Some(t) = &text {
                say(out, format!("output: {t}"))?;
            }
            return Ok(json!({
                "schema": "attest.submit/1",
                "job": job,
                "phase": phase,
                "output": text,
                "output_hash": output.as_ref().map(|o| o["output_hash"].clone()),
                "view": view,
            }));
        }
        if spin {
            tick += 1;
            let frame = FRAMES[tick % FRAMES.len()];
            let secs = started.elapsed().as_secs_f64();
            write!(out, "\r{frame} job is {phase} ({secs:.1}s)")?;
            out.flush()?;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// Audits the chain a node serves (`--node`) or a stopped node's data directory
/// (`--data-dir`), from genesis, and returns the report (`attest.audit/1`).
pub fn run_audit(
    genesis_path: &Path,
    node: Option<&str>,
    data_dir: Option<&Path>,
    range: AuditRange,
) -> Result<(Value, bool)> {
    let genesis = attest_node::genesis::load(genesis_path)?;
    let result = match data_dir {
        Some(dir) => {
            let id = GenesisId {
                chain_id: genesis.genesis.chain_id.clone(),
                hash: genesis.hash(),
            };
            let store = SledStore::open(dir, &id)?;
            let latest = store.latest_height();
            let blocks = store.blocks(Height(1)..=latest);
            audit::audit(&genesis, blocks, range, attest_node::shell::monotonic)
        }
        None => {
            let mut api = Api::new(node.unwrap_or(DEFAULT_NODE))?;
            let blocks = NodeBlocks {
                api: &mut api,
                next: Height(1),
                to: range.to,
            };
            audit::audit(&genesis, blocks, range, attest_node::shell::monotonic)
        }
    };
    match result {
        Ok(report) => Ok((serde_json::to_value(&report)?, true)),
        Err(failed) => Ok((serde_json::to_value(&*failed.report)?, false)),
    }
}

/// Blocks read one by one from a node's API, up to `to` or its height.
struct NodeBlocks<'a> {
    api: &'a mut Api,
    next: Height,
    to: Option<Height>,
}

impl Iterator for NodeBlocks<'_> {
    type Item = Result<(Block, CommitCertificate), anyhow::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.to.is_some_and(|to| self.next > to) {
            return None;
        }
        let height = self.next;
        self.next = Height(height.0 + 1);
        self.api.raw_block(height).transpose()
    }
}

/// Writes the JSON-lines export of the chain a node serves to `out`.
pub fn export(genesis_path: &Path, node: &str, out: &mut impl Write) -> Result<()> {
    let genesis = attest_node::genesis::load(genesis_path)?;
    let mut api = Api::new(node)?;
    let blocks = NodeBlocks {
        api: &mut api,
        next: Height(1),
        to: None,
    };
    audit::export_jsonl(&genesis, blocks, out)?;
    Ok(())
}

/// A new client key at `path` (mode 0600), refusing to overwrite one.
pub fn new_key(path: &Path) -> Result<SecretKey> {
    if path.exists() {
        bail!("key file {} already exists", path.display());
    }
    let mut seed = [0u8; 32];
    getrandom_seed(&mut seed)?;
    let key = SecretKey::from_seed(seed);
    attest_node::keyfile::write(path, &key)?;
    Ok(key)
}

fn getrandom_seed(seed: &mut [u8; 32]) -> Result<()> {
    // The node crate owns the one source of OS randomness; reading /dev/urandom keeps this
    // crate free of another dependency.
    let mut f = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    std::io::Read::read_exact(&mut f, seed).context("reading /dev/urandom")?;
    Ok(())
}

/// The client subcommands of `attest job`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// The job's ledger state and timeline.
    Show {
        /// The job id (its opening transaction's hash).
        id: String,
    },
    /// The job's output, verified by the node against the ledger hash.
    Output {
        /// The job id.
        id: String,
    },
}
