//! The client commands: `attest submit`, `attest job`, `attest market`, `attest ledger` and
//! `attest audit`. They talk to a node's HTTP API (by default the local testnet's first node)
//! and verify what matters themselves: a job's output against the ledger's hash, and the
//! whole chain in an audit.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use attest_chain::GenesisFile;
use attest_chain::audit::{self, AuditRange, AuditReport};
use attest_core::store::{GenesisId, Store};
use attest_node::api::accounts::AccountSnapshot;
use attest_node::api::chain::{RawBlock, RawBlocksPage, SubmitTx, Submitted, TxState};
use attest_node::api::jobs::{Assurance, CheckView, JobView, OutputView};
use attest_node::api::market::{Adverts, Quote, QuoteRequest};
use attest_node::api::{BlockView, BlocksPage, ChainParams};
use attest_node::sled_store::SledStore;
use attest_node::views::Status;
use attest_protocol::tx::{Action, CheckLevel, OpenJob, Tx};
use attest_protocol::{
    AccountId, Amount, Block, Bytes, Canonical, CommitCertificate, DeviceName, Hash, Height, JobId,
    ModelId, Nonce, SecretKey, Signed,
};

use crate::http;

/// The local testnet's first node: where client commands go unless `--node` says otherwise.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:26601";
/// The local testnet's genesis and first client key, the defaults of `audit` and `submit`.
pub const DEFAULT_GENESIS: &str = ".attest/testnet/genesis.json";
/// The first funded client of the local testnet.
pub const DEFAULT_KEY: &str = ".attest/testnet/clients/client-0.key";

/// A node's API, typed: each call answers the view the node documents (`docs/API.md`), and
/// an error answer becomes an [`http::Error`] naming the request, its status and the node's
/// `{error, detail}`. An unreachable node's error says so first.
#[derive(Debug, Clone)]
pub struct Api {
    http: http::Client,
}

impl Api {
    /// A client of the node at `url` (`http://HOST:PORT` or `https://...`).
    pub fn new(url: &str) -> Result<Self> {
        Ok(Self {
            http: http::Client::new(url)?,
        })
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        self.http.url()
    }

    fn fail(&self, e: http::Error) -> anyhow::Error {
        if e.is_unreachable() {
            let url = self.url().to_owned();
            anyhow::Error::new(e).context(format!("node {url} unreachable"))
        } else {
            e.into()
        }
    }

    /// `GET path`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.http.get(path).map_err(|e| self.fail(e))
    }

    /// `GET path` as a server-sent event stream (`/v1/events?...`): its `data:` lines with
    /// their event names, as they arrive.
    pub fn events(&self, path: &str) -> Result<impl Iterator<Item = Result<http::SseLine>>> {
        let lines = self.http.events(path).map_err(|e| self.fail(e))?;
        Ok(lines.map(|line| line.map_err(anyhow::Error::new)))
    }

    /// `POST path` with `body` as JSON, the answer decoded as `T`.
    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.http.post(path, body).map_err(|e| self.fail(e))
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Status> {
        self.get("/v1/status")
    }

    /// `GET /v1/params`: the chain's id, genesis hash and contract parameters.
    pub fn params(&self) -> Result<ChainParams> {
        self.get("/v1/params")
    }

    /// `GET /v1/genesis`: the node's genesis document, parsed and checked as a genesis file
    /// is (`GenesisFile::parse`). Its hash is the caller's to compare with one it trusts.
    pub fn genesis(&self) -> Result<GenesisFile> {
        let doc: Value = self.get("/v1/genesis")?;
        GenesisFile::parse(&doc.to_string())
            .map_err(|e| anyhow!("the genesis node {} serves: {e}", self.url()))
    }

    /// `GET /v1/adverts`: the node's advert book.
    pub fn adverts(&self) -> Result<Adverts> {
        self.get("/v1/adverts")
    }

    /// `POST /v1/quote`: the gateway's pick for a job.
    pub fn quote(&self, request: &QuoteRequest) -> Result<Quote> {
        self.post("/v1/quote", request)
    }

    /// `POST /v1/txs`: submits a signed transaction; answers its hash once admitted.
    pub fn submit<T: Canonical>(&self, signed: &T) -> Result<Submitted> {
        let body = SubmitTx {
            tx: hex::encode(signed.encode()),
        };
        self.post("/v1/txs", &body)
    }

    /// `GET /v1/jobs/{id}`.
    pub fn job(&self, id: &str) -> Result<JobView> {
        self.get(&format!("/v1/jobs/{id}"))
    }

    /// `GET /v1/jobs/{id}/output`: the job's output, matched by the node against the
    /// provider's committed output hash.
    pub fn job_output(&self, id: &str) -> Result<OutputView> {
        self.get(&format!("/v1/jobs/{id}/output"))
    }

    /// `GET /v1/accounts/{id}?proof=true`.
    pub fn account_proven(&self, id: &AccountId) -> Result<AccountSnapshot> {
        self.get(&format!("/v1/accounts/{id}?proof=true"))
    }

    /// `GET /v1/jobs/{id}?proof=true`.
    pub fn job_proven(&self, id: &str) -> Result<JobView> {
        self.get(&format!("/v1/jobs/{id}?proof=true"))
    }

    /// `GET /v1/accounts/{id}`.
    pub fn account(&self, id: &AccountId) -> Result<AccountSnapshot> {
        self.get(&format!("/v1/accounts/{id}"))
    }

    /// `GET /v1/txs/{hash}`: where the transaction is (`committed` or `pending`), or `None`
    /// if the node has it in neither its index nor its mempool.
    pub fn tx(&self, hash: &attest_protocol::TxHash) -> Result<Option<TxState>> {
        match self.get(&format!("/v1/txs/{hash}")) {
            Ok(at) => Ok(Some(at)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/blocks/{height}`.
    pub fn block(&self, height: u64) -> Result<BlockView> {
        self.get(&format!("/v1/blocks/{height}"))
    }

    /// `GET /v1/blocks?from=&to=`: one page of blocks.
    pub fn blocks(&self, from: u64, to: u64) -> Result<BlocksPage> {
        self.get(&format!("/v1/blocks?from={from}&to={to}"))
    }

    /// The committed block at `height` with its certificate, decoded from canonical bytes;
    /// `None` above the node's height.
    pub fn raw_block(&self, height: Height) -> Result<Option<(Block, CommitCertificate)>> {
        match self.get::<RawBlock>(&format!("/v1/blocks/{}/raw", height.0)) {
            Ok(raw) => decode_raw(&raw).map(Some),
            Err(e) if code_of(&e) == Some("not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/blocks/raw?from=&to=`: one page of committed blocks from `from`, decoded
    /// from canonical bytes, ascending (empty above the node's height).
    pub fn raw_blocks(&self, from: Height, to: Height) -> Result<Vec<(Block, CommitCertificate)>> {
        let page: RawBlocksPage =
            self.get(&format!("/v1/blocks/raw?from={}&to={}", from.0, to.0))?;
        let blocks = page
            .blocks
            .iter()
            .map(decode_raw)
            .collect::<Result<Vec<_>>>()?;
        let contiguous = blocks
            .iter()
            .zip(from.0..)
            .all(|((b, _), h)| b.header.height.0 == h);
        if !contiguous {
            bail!("the node's page from height {} is not contiguous", from.0);
        }
        Ok(blocks)
    }
}

/// A block and certificate from their hex canonical encodings.
fn decode_raw(raw: &RawBlock) -> Result<(Block, CommitCertificate)> {
    let height = raw.height.0;
    let bytes = |field: &str, text: &str| -> Result<Vec<u8>> {
        hex::decode(text).with_context(|| format!("block {height}: {field} is not hex"))
    };
    let block =
        Block::decode(&bytes("block", &raw.block)?).map_err(|e| anyhow!("block {height}: {e}"))?;
    let cert = CommitCertificate::decode(&bytes("certificate", &raw.certificate)?)
        .map_err(|e| anyhow!("certificate {height}: {e}"))?;
    Ok((block, cert))
}

/// The node's error code (`not_found`, `stale_nonce`, ...) if `e` is an error answer.
pub fn code_of(e: &anyhow::Error) -> Option<&str> {
    http::Error::find(e).and_then(http::Error::code)
}

/// The status of an error answer, if `e` is one.
pub fn status_of(e: &anyhow::Error) -> Option<u16> {
    http::Error::find(e).and_then(http::Error::status)
}

/// How long an admitted job may stay off the ledger before the client gives up on it. A
/// block commits an admitted transaction within a few blocks (well under a second on a
/// local testnet) unless the contract refuses it at block time.
const NEVER_COMMITTED: Duration = Duration::from_secs(20);

/// A job the node admitted that no block took within [`NEVER_COMMITTED`]: a block refused it
/// (its provider was banned or ran out of stake after the node admitted it), and none will
/// take it now. A caller may open the job again with another provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeverCommitted {
    /// The job that never committed.
    pub job: JobId,
}

impl std::fmt::Display for NeverCommitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job {} was admitted but not committed within {NEVER_COMMITTED:?}: \
             refused_by_contract at block time (provider no longer eligible?)",
            self.job
        )
    }
}

impl std::error::Error for NeverCommitted {}

/// `--provider` named a provider this node's advert book cannot take a job for now: it holds
/// no unexpired advert of it, or its advert does not serve the model. Nothing was signed or
/// sent. A caller may wait for the provider's next advert, or leave the pick to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAdvert {
    /// The provider asked for, as given.
    pub provider: String,
    /// The model asked for.
    pub model: String,
    /// The models its advert serves; `None`: the book holds no unexpired advert of it.
    pub serves: Option<Vec<String>>,
}

impl std::fmt::Display for NoAdvert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.serves {
            None => write!(
                f,
                "--provider {}: the node's advert book (GET /v1/adverts) holds no unexpired \
                 advert of it: it is not advertising, its advert has not reached this node \
                 yet or lapsed, or it is banned; try again later, or leave out --provider for \
                 the gateway's pick",
                self.provider
            ),
            Some(models) => write!(
                f,
                "--provider {}: its advert does not serve model {} (it serves {})",
                self.provider,
                self.model,
                models.join(", ")
            ),
        }
    }
}

impl std::error::Error for NoAdvert {}

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
    /// Milliseconds of block time the provider has to commit.
    pub deadline_ms: u32,
    /// The assurance bought: the chain's random spot-check rate, or always checked.
    pub check: CheckLevel,
    /// Wait until the output arrives (`result`), the result is checked (`verdict`) or the
    /// job is final (`settled`).
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
    /// Until this node holds the output and it matches the provider's committed output hash
    /// (which says the bytes are the ones committed, not that they are right).
    Result,
    /// Until what stands behind the result is decided: a checker's verdict, a dispute's
    /// outcome, or settlement without a check.
    Verdict,
    /// Until the job settles (or is refunded).
    Settled,
}

/// Opens a job through the node (its gateway picks the provider from its advert book), then
/// follows it through each stage, printing a line per stage unless `json`, and returns the
/// final record (schema `attest.submit/1`).
pub fn submit(args: &SubmitArgs, json: bool, out: &mut impl Write) -> Result<SubmitRecord> {
    // Refuse what the contract would refuse, before asking anyone.
    attest_protocol::workload::Job::new(&args.model, &args.input, args.max_tokens)
        .with_context(|| format!("job for model {}", args.model))?;
    let mut opener = Opener::new(&args.node, &args.key)?;
    let opened = opener.open(args)?;
    let progress = Progress::new(json);
    progress.say(out, format!("submitted job {}", opened.job))?;
    progress.say(
        out,
        format!(
            "assigned to provider {} on {} at {} micro-units per token",
            opened.provider, opened.device, opened.price_per_token.0
        ),
    )?;
    follow(opener.api(), opened.job, args, out, &progress)
}

/// What `attest submit` shows while it follows a job: a line per stage unless the output is
/// JSON, and on a terminal a spinner line between them that shows the job is alive (cleared
/// before each stage line and at the end). Redirected output gets the plain lines only.
#[derive(Debug)]
struct Progress {
    json: bool,
    spinner: Option<ProgressBar>,
}

impl Progress {
    fn new(json: bool) -> Self {
        let spinner = (!json && std::io::stdout().is_terminal()).then(|| {
            let style = ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
                .tick_strings(&["|", "/", "-", "\\", " "]);
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            bar.set_style(style);
            bar
        });
        Self { json, spinner }
    }

    /// A stage line.
    fn say(&self, out: &mut dyn Write, line: String) -> Result<()> {
        if self.json {
            return Ok(());
        }
        let mut write = || -> std::io::Result<()> {
            writeln!(out, "{line}")?;
            out.flush()
        };
        match &self.spinner {
            Some(bar) => bar.suspend(write)?,
            None => write()?,
        }
        Ok(())
    }

    /// The spinner's next frame, showing `line`.
    fn spin(&self, line: String) {
        if let Some(bar) = &self.spinner {
            bar.set_message(line);
            bar.tick();
        }
    }
}

impl Drop for Progress {
    /// However the wait ends (an error too), the spinner line goes.
    fn drop(&mut self) {
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
        }
    }
}

/// What `attest submit` ends with: the job, where it stands, and its output if this node holds
/// it verified.
#[derive(Debug, Clone)]
pub struct SubmitRecord {
    /// The job id.
    pub job: JobId,
    /// Its phase when the wait ended.
    pub phase: String,
    /// Its output as text, if the node holds it (and it is UTF-8).
    pub output: Option<String>,
    /// The output's hash, checked against the ledger's, if the node holds the output.
    pub output_hash: Option<Hash>,
    /// The job as `GET /v1/jobs/{id}` showed it last.
    pub view: JobView,
}

impl SubmitRecord {
    /// The record as `attest submit --json` prints it (schema `attest.submit/1`).
    pub fn to_json(&self) -> Value {
        json!({
            "schema": "attest.submit/1",
            "job": self.job,
            "phase": self.phase,
            "output": self.output,
            "output_hash": self.output_hash,
            "view": self.view,
        })
    }
}

/// A job the node admitted to its mempool: not yet on the ledger.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The job id: the hash of its `OpenJob` transaction.
    pub job: JobId,
    /// The provider it names.
    pub provider: AccountId,
    /// The provider's device.
    pub device: DeviceName,
    /// The agreed price per token, in micro-units.
    pub price_per_token: Amount,
}

/// How often [`Opener::send_committed`] looks at the account while it waits.
const COMMIT_POLL: Duration = Duration::from_millis(100);

/// A transaction a block committed.
#[derive(Debug, Clone, Serialize)]
pub struct Committed {
    /// Its hash.
    pub hash: attest_protocol::TxHash,
    /// The block that holds it.
    pub height: Height,
    /// The nonce it carried.
    pub nonce: u64,
    /// The fee it paid, in units.
    pub fee: Amount,
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
    /// The fee each transaction pays: the chain's minimum (`GET /v1/params`).
    fee: Amount,
    next_nonce: u64,
}

impl Opener {
    /// A session for the key in `key_file` at the node `node`: reads the chain id and its
    /// minimum fee (`GET /v1/params`) and the account's committed nonce.
    pub fn new(node: &str, key_file: &Path) -> Result<Self> {
        let key = attest_node::keyfile::read(key_file)?;
        let api = Api::new(node)?;
        let params = api.params()?;
        let chain = attest_protocol::ChainId::new(&params.chain_id)
            .map_err(|e| anyhow!("chain id {:?}: {e}", params.chain_id))?;
        let mut opener = Self {
            api,
            key,
            chain,
            fee: params.params.min_fee,
            next_nonce: 0,
        };
        opener.resync()?;
        Ok(opener)
    }

    /// The node's API, for following what was opened.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Takes the next nonce from the ledger again: after a refusal that says the local one
    /// is wrong, or when a transaction that was admitted never committed (it left a gap that
    /// stalls every later one).
    pub fn resync(&mut self) -> Result<()> {
        self.next_nonce = self.api.account(&self.key.public())?.nonce.0;
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
        // A provider asked for by name is that provider or an error, never another one.
        let chosen = match &args.provider {
            Some(p) => {
                let advert = self
                    .api
                    .adverts()?
                    .adverts
                    .into_iter()
                    .find(|ad| ad.provider.to_string() == *p);
                let no_advert = |serves| NoAdvert {
                    provider: p.clone(),
                    model: args.model.clone(),
                    serves,
                };
                let Some(ad) = advert else {
                    return Err(no_advert(None).into());
                };
                if !ad.models.iter().any(|m| m.as_str() == args.model) {
                    let serves = ad.models.iter().map(|m| m.as_str().to_owned()).collect();
                    return Err(no_advert(Some(serves)).into());
                }
                Some((ad.provider, ad.device, ad.price_per_token))
            }
            None => None,
        };
        let (provider, device, price) = match chosen {
            Some(terms) => terms,
            None => {
                let quote = self.api.quote(&QuoteRequest {
                    model: args.model.clone(),
                    max_price_per_token: args.max_price,
                    client: Some(client.to_string()),
                })?;
                (quote.provider, quote.device, quote.price_per_token)
            }
        };
        let open = OpenJob {
            model: ModelId::new(&args.model).map_err(|e| anyhow!("model: {e}"))?,
            input: Bytes::new(args.input.clone()).map_err(|_| anyhow!("input too long"))?,
            max_tokens: args.max_tokens,
            provider,
            device: device.clone(),
            price_per_token: price,
            deadline_ms: args.deadline_ms,
            check: args.check,
        };
        let hash = self.send(Action::OpenJob(open))?;
        Ok(Opened {
            job: JobId::from(hash),
            provider,
            device,
            price_per_token: price,
        })
    }

    /// The account this session signs for.
    pub fn account(&self) -> AccountId {
        self.key.public()
    }

    /// The chain this session signs for.
    pub fn chain(&self) -> &attest_protocol::ChainId {
        &self.chain
    }

    /// The fee each transaction pays (the chain's `min_fee`).
    pub fn fee(&self) -> Amount {
        self.fee
    }

    /// Signs and posts `action`, then follows it until a block commits it: the account's
    /// committed nonce passes the transaction's, and the block that did it is found among
    /// those committed since the post. Fails after `timeout`, or if another transaction of
    /// the same key took the nonce.
    pub fn send_committed(&mut self, action: Action, timeout: Duration) -> Result<Committed> {
        let started = Instant::now();
        let nonce = self.next_nonce;
        let hash = self.send(action)?;
        loop {
            // The node's transaction index says where it is; gone from both the index and the
            // mempool, the account's nonce says whether another transaction took its place.
            match self.api.tx(&hash)? {
                Some(at) if at.state == "committed" => {
                    let height = at.height.ok_or_else(|| {
                        anyhow!("the node says {hash} is committed but not where")
                    })?;
                    return Ok(Committed {
                        hash,
                        height,
                        nonce,
                        fee: self.fee,
                    });
                }
                Some(_) => {}
                None => {
                    let account = self.api.account(&self.key.public())?;
                    if account.nonce.0 > nonce {
                        bail!(
                            "transaction {hash} was not committed: another transaction of this \
                             key took nonce {nonce}"
                        );
                    }
                    bail!(
                        "transaction {hash} (nonce {nonce}) was admitted but is no longer in the \
                         node's mempool nor in a block: it expired, or the node restarted and \
                         lost it. Nothing was spent; run the command again"
                    );
                }
            }
            if started.elapsed() > timeout {
                bail!(
                    "transaction {hash} (nonce {nonce}) was admitted but not committed within \
                     {} s; `attest account` shows whether it still lands",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(COMMIT_POLL);
        }
    }

    /// Signs `action` with the next nonce and posts it; returns its hash once the node has
    /// admitted it. On refusal the nonce is not used up; a nonce the node says is already
    /// taken moves the local one on, and the error is returned for the caller to retry.
    pub fn send(&mut self, action: Action) -> Result<attest_protocol::TxHash> {
        let tx = Tx {
            nonce: Nonce(self.next_nonce),
            fee: self.fee,
            action,
        };
        let signed = Signed::sign(&self.chain, &self.key, tx);
        let hash = match self.api.submit(&signed) {
            Ok(submitted) => submitted.hash,
            // The connection dropped after the node admitted it and the post was sent again
            // (see `http::Client`): it is in, under the hash it always had.
            Err(e) if code_of(&e) == Some("duplicate") => attest_protocol::tx_hash(&signed),
            Err(e) => {
                match code_of(&e) {
                    Some("stale_nonce") => self.resync()?,
                    Some("nonce_taken") => self.next_nonce += 1,
                    _ => {}
                }
                return Err(e);
            }
        };
        self.next_nonce += 1;
        Ok(hash)
    }
}

/// Polls the job until the wanted stage, printing each stage once.
fn follow(
    api: &Api,
    job: JobId,
    args: &SubmitArgs,
    out: &mut impl Write,
    progress: &Progress,
) -> Result<SubmitRecord> {
    let started = Instant::now();
    let id = job.to_string();
    let news = job_events(api, &id);
    let mut seen: Vec<&'static str> = Vec::new();
    let mut note = |out: &mut dyn Write, stage: &'static str, line: String| -> Result<()> {
        if !seen.contains(&stage) {
            seen.push(stage);
            progress.say(out, line)?;
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
        let view = match api.job(&id) {
            Ok(v) => v,
            Err(e) if status_of(&e) == Some(404) => {
                // Admitted but never committed: a block refused it (its provider was banned or
                // ran out of stake meanwhile), and no block will take it now.
                if started.elapsed() > NEVER_COMMITTED {
                    return Err(NeverCommitted { job }.into());
                }
                std::thread::sleep(Duration::from_millis(150));
                continue;
            }
            Err(e) => return Err(e),
        };
        note(
            out,
            "open",
            format!("escrow locked at height {}", view.opened_at.0),
        )?;
        if let Some(result) = &view.result {
            let h = result.committed_at.0;
            note(out, "result", format!("result committed at height {h}"))?;
        }
        if let Some(CheckView::Pending { checker, .. }) = &view.check {
            note(out, "check", format!("check assigned to {checker}"))?;
        }
        if let Assurance::Challenged { challenger, .. } = &view.assurance {
            note(
                out,
                "dispute",
                format!("challenged by {challenger}: dispute opened"),
            )?;
        }
        let output = if view.output_held {
            let o = api.job_output(&id)?;
            note(
                out,
                "output",
                format!(
                    "output received; it matches the provider's commitment (output hash {}), \
                     which is not a check of the result",
                    o.output_hash
                ),
            )?;
            Some(o)
        } else {
            None
        };
        let phase = view.phase.clone();
        let fin = phase == "settled" || phase == "refunded";
        let done = match args.wait {
            // A final job whose output this node does not hold (it was not the gateway, or
            // the provider never answered) ends the wait too: there is nothing more to come.
            Wait::Result => output.is_some() || fin,
            Wait::Verdict => view.assurance.is_decided(),
            Wait::Settled => fin,
        };
        if done {
            note(out, "final", format!("job is {phase}"))?;
            progress.say(out, format!("assurance: {}", view.assurance.describe()))?;
            let text = output.as_ref().and_then(|o| o.output.clone());
            if let Some(t) = &text {
                progress.say(out, format!("output: {t}"))?;
            }
            return Ok(SubmitRecord {
                job,
                phase,
                output: text,
                output_hash: output.map(|o| o.output_hash),
                view,
            });
        }
        let secs = started.elapsed().as_secs_f64();
        progress.spin(format!("job is {phase} ({secs:.1}s)"));
        // The job's next event wakes us; without one, look again after a while (the stream
        // may be down). A committed result whose output the gateway is still fetching is
        // looked at again soon.
        let fetching = view.result.is_some() && !view.output_held && args.wait == Wait::Result;
        let wait = if fetching { FETCH_POLL } else { SILENT_POLL };
        let _ = news.recv_timeout(wait);
        while news.try_recv().is_ok() {}
    }
}

/// How long `attest submit` waits for the job's next event before it looks anyway.
const SILENT_POLL: Duration = Duration::from_secs(1);
/// How soon it looks again while the gateway fetches a committed result's output (which has
/// no event of its own).
const FETCH_POLL: Duration = Duration::from_millis(50);

/// A signal per event about `job` on the node's event stream (`/v1/events?job=ID`), read on a
/// thread of its own. If the stream cannot be opened, the receiver just never fires and the
/// caller polls. The thread ends with the stream or at the first event after the receiver is
/// dropped.
fn job_events(api: &Api, job: &str) -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (api, path) = (api.clone(), format!("/v1/events?job={job}"));
    std::thread::spawn(move || {
        let Ok(lines) = api.events(&path) else {
            return;
        };
        for line in lines {
            if line.is_err() || tx.send(()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Where an auditor's genesis comes from: a file, or the node it audits, and the hash the
/// auditor pins it to (`--genesis-hash`).
#[derive(Debug, Clone, Default)]
pub struct GenesisChoice {
    /// `--genesis FILE`, if given.
    pub file: Option<PathBuf>,
    /// `--genesis-hash H`, if given.
    pub pinned: Option<Hash>,
}

/// The genesis an audit or export starts from and what stands behind it.
#[derive(Debug, Clone)]
pub struct ChosenGenesis {
    /// The document.
    pub genesis: GenesisFile,
    /// Its hash.
    pub hash: Hash,
    /// `file PATH` or `node URL`.
    pub source: String,
    /// Whether it was checked against a hash the user gave (`--genesis-hash`).
    pub pinned: bool,
}

impl ChosenGenesis {
    /// What it is and what stands behind it, as JSON (the `genesis` field of reports).
    pub fn to_json(&self) -> Value {
        json!({ "hash": self.hash, "source": self.source, "pinned": self.pinned })
    }

    /// One line for a reader.
    pub fn describe(&self) -> String {
        let trust = if self.pinned {
            "it hashes to the --genesis-hash given"
        } else if self.source.starts_with("node ") {
            "not pinned: the audited node's word; pass --genesis-hash to check it"
        } else {
            "not pinned to a hash"
        };
        format!("genesis {} from {} ({trust})", self.hash, self.source)
    }
}

impl GenesisChoice {
    /// Reads the genesis: `--genesis FILE` if given; else for a node, the node's own
    /// (`GET /v1/genesis`) when a hash is pinned or the local testnet's file is absent, the
    /// local testnet's file otherwise; for a data directory, the local testnet's file. A
    /// pinned hash must match whichever was read.
    pub fn resolve(&self, node: Option<&Api>) -> Result<ChosenGenesis> {
        let default = Path::new(DEFAULT_GENESIS);
        let (genesis, source) = match (&self.file, node) {
            (Some(path), _) => (
                attest_node::genesis::load(path)?,
                format!("file {}", path.display()),
            ),
            (None, Some(api)) if self.pinned.is_some() || !default.exists() => {
                (api.genesis()?, format!("node {}", api.url()))
            }
            (None, _) => (
                attest_node::genesis::load(default)?,
                format!("file {}", default.display()),
            ),
        };
        let hash = genesis.hash();
        if let Some(want) = self.pinned {
            ensure!(
                hash == want,
                "the genesis from {source} hashes to {hash}, not to the --genesis-hash {want}: \
                 it is another chain, or the node serves a forged genesis"
            );
        }
        Ok(ChosenGenesis {
            genesis,
            hash,
            source,
            pinned: self.pinned.is_some(),
        })
    }
}

/// Audits the chain a node serves (`--node`) or a stopped node's data directory
/// (`--data-dir`), from `genesis`, and returns the report (`attest.audit/1`) and whether it
/// passed.
pub fn run_audit(
    genesis: &GenesisFile,
    node: Option<&str>,
    data_dir: Option<&Path>,
    range: AuditRange,
    from_snapshot: Option<Height>,
) -> Result<(AuditReport, bool)> {
    let result = match data_dir {
        Some(dir) => {
            let id = GenesisId {
                chain_id: genesis.genesis.chain_id.clone(),
                hash: genesis.hash(),
            };
            let store = SledStore::open(dir, &id)?;
            let latest = store.latest_height();
            match from_snapshot {
                None => {
                    let last = range.to.map_or(latest, |to| to.min(latest));
                    let chain_id = genesis.genesis.chain_id.clone();
                    let blocks = prefetched(chain_id, move |push| {
                        for item in store.blocks(Height(1)..=last) {
                            if !push(item.map_err(anyhow::Error::from)) {
                                break;
                            }
                        }
                    });
                    audit::audit_preverified(genesis, blocks, range, attest_node::shell::monotonic)
                }
                Some(h) => {
                    let snapshots = attest_node::snapshots::Snapshots::new(dir, 1, 1);
                    let path = snapshots.path(h);
                    // Checked against the stored blocks: its head is block H, and block H + 1
                    // (if stored) claims its root; the audit checks H + 1 again.
                    let chain = attest_node::snapshots::load(&path, genesis, &store)
                        .with_context(|| format!("snapshot {}", path.display()))?;
                    let blocks = store.blocks(h.next()..=latest);
                    audit::audit_from_snapshot(
                        genesis,
                        chain,
                        blocks,
                        range,
                        attest_node::shell::monotonic,
                    )
                }
            }
        }
        None => {
            let api = Api::new(node.unwrap_or(DEFAULT_NODE))?;
            let chain_id = genesis.genesis.chain_id.clone();
            let to = range.to;
            let blocks = prefetched(chain_id, move |push| {
                for item in NodeBlocks::new(&api, to) {
                    if !push(item) {
                        break;
                    }
                }
            });
            audit::audit_preverified(genesis, blocks, range, attest_node::shell::monotonic)
        }
    };
    match result {
        Ok(report) => Ok((report, true)),
        Err(failed) => Ok((*failed.report, false)),
    }
}

/// Blocks fetched ahead of the audit.
const PREFETCH_BLOCKS: usize = 64;

/// Threads that verify fetched blocks' signatures.
const VERIFIERS: usize = 2;

/// Blocks in height order from height 1, which `read` hands to the `push` it is given (from a
/// node's API or a stopped node's store; it stops when `push` answers false), read ahead (at
/// most [`PREFETCH_BLOCKS`]) on a thread of their own, which hands them in turn to
/// [`VERIFIERS`] threads that verify every signature that needs no state (transactions,
/// certificates: `audit::Fetched::verify`, the protocol's rule, in batches). The replay on
/// this thread takes them back in height order. A signature that fails there is passed on
/// unverified, and the replay reports it. The threads end when the blocks do, at the first
/// error, or when the receiver is dropped.
fn prefetched(
    chain: attest_protocol::ChainId,
    read: impl FnOnce(&mut dyn FnMut(Result<CommittedPair, anyhow::Error>) -> bool) + Send + 'static,
) -> impl Iterator<Item = Result<audit::Fetched, anyhow::Error>> {
    type Work = Result<(CommittedPair, bool), anyhow::Error>;
    let per_thread = PREFETCH_BLOCKS / VERIFIERS;
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for _ in 0..VERIFIERS {
        let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Work>(per_thread);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(per_thread);
        let chain = chain.clone();
        std::thread::spawn(move || {
            for work in work_rx {
                let fetched = work.map(|(block, same)| audit::Fetched::verify(block, &chain, same));
                if done_tx.send(fetched).is_err() {
                    break;
                }
            }
        });
        inputs.push(work_tx);
        outputs.push(done_rx);
    }
    std::thread::spawn(move || {
        let mut previous: Option<CommitCertificate> = None;
        let mut i = 0usize;
        read(&mut |item| {
            let stop = item.is_err();
            let work = item.map(|(block, cert)| {
                let same = block.last_commit.is_some() && block.last_commit == previous;
                previous = Some(cert.clone());
                ((block, cert), same)
            });
            let sent = inputs[i % VERIFIERS].send(work).is_ok();
            i = i.wrapping_add(1);
            sent && !stop
        });
    });
    let mut turn = 0usize;
    std::iter::from_fn(move || {
        let next = outputs[turn % VERIFIERS].recv().ok();
        turn += 1;
        next
    })
}

type CommittedPair = (Block, CommitCertificate);

/// Blocks read from a node's API a page at a time (`GET /v1/blocks/raw`), up to `to` or
/// its height.
struct NodeBlocks<'a> {
    api: &'a Api,
    next: Height,
    to: Option<Height>,
    page: std::collections::VecDeque<(Block, CommitCertificate)>,
}

impl<'a> NodeBlocks<'a> {
    fn new(api: &'a Api, to: Option<Height>) -> Self {
        Self {
            api,
            next: Height(1),
            to,
            page: std::collections::VecDeque::new(),
        }
    }
}

/// Blocks asked for in one page (the node serves at most 100).
const PAGE_BLOCKS: u64 = 100;

impl Iterator for NodeBlocks<'_> {
    type Item = Result<(Block, CommitCertificate), anyhow::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() {
            let last = Height(self.next.0.saturating_add(PAGE_BLOCKS - 1));
            let last = self.to.map_or(last, |to| to.min(last));
            if last < self.next {
                return None;
            }
            match self.api.raw_blocks(self.next, last) {
                Ok(blocks) => self.page.extend(blocks),
                Err(e) => {
                    // One error ends the blocks.
                    self.to = Some(Height(0));
                    return Some(Err(e));
                }
            }
        }
        let item = self.page.pop_front()?;
        self.next = item.0.header.height.next();
        Some(Ok(item))
    }
}

/// Writes the JSON-lines export of the chain a node serves to `out`, from `genesis`.
pub fn export(genesis: &GenesisFile, api: &Api, out: &mut impl Write) -> Result<()> {
    let blocks = NodeBlocks::new(api, None);
    audit::export_jsonl(genesis, blocks, out)?;
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
        /// Prove the job's ledger entry against a certified block's state root and check it
        /// client-side.
        #[arg(long)]
        verify: bool,
    },
    /// The job's output as the node's gateway fetched it, which matches the provider's
    /// committed output hash (see `job show` for whether anyone checked the result).
    Output {
        /// The job id.
        id: String,
    },
}

/// What a light-client check established.
#[derive(Debug, Clone)]
pub struct LightCheck {
    /// The proven state's height.
    pub height: Height,
    /// The certified block's hash (block `height + 1`).
    pub block: attest_protocol::BlockHash,
    /// Each proven entry (`None`: proven absent).
    pub entries: Vec<(
        attest_contracts_sim::Key,
        Option<attest_contracts_sim::Entry>,
    )>,
    /// How many validators signed the certificate, and their power of the set's total.
    pub signers: usize,
    /// Their power.
    pub power: u64,
    /// The set's total power.
    pub total: u64,
}

/// Checks `proof` client-side: waits up to `timeout` for block `height + 1`, whose header
/// carries the proven root, checks its certificate against the validator set the proof names
/// and every entry's proof against the header's root.
pub fn check_proof(
    api: &Api,
    proof: &attest_node::views::ProofView,
    timeout: Duration,
) -> Result<LightCheck> {
    let chain_id = attest_protocol::ChainId::new(&api.status()?.chain_id)
        .map_err(|e| anyhow!("the node's chain id: {e}"))?;
    let proofs = proof
        .proofs
        .iter()
        .map(|text| {
            let bytes = hex::decode(text).context("a proof is not hex")?;
            attest_chain::LightProof::decode_proof(&bytes).map_err(|e| anyhow!("{e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let light = attest_chain::LightProof {
        height: proof.height,
        proofs,
        validators: proof.validators.clone(),
    };
    let next = proof.height.next();
    let started = std::time::Instant::now();
    let (block, cert) = loop {
        if let Some(pair) = api.raw_block(next)? {
            break pair;
        }
        if started.elapsed() > timeout {
            anyhow::bail!(
                "block {next}, which certifies the proven root, was not committed within {timeout:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    anyhow::ensure!(
        block.header.state_root == proof.state_root,
        "block {next} claims state root {}, the proof is against {}",
        block.header.state_root,
        proof.state_root
    );
    let entries = attest_chain::verify_light(&chain_id, &light, &block, &cert)
        .map_err(|e| anyhow!("the proof does not hold: {e}"))?;
    let set = attest_chain::ValidatorSet::new(light.validators.iter().copied())
        .map_err(|e| anyhow!("{e}"))?;
    let power = cert
        .signatures
        .iter()
        .filter_map(|s| set.get(&s.validator))
        .map(|v| v.power())
        .sum();
    Ok(LightCheck {
        height: proof.height,
        block: block.hash(),
        entries,
        signers: cert.signatures.len(),
        power,
        total: set.total_power(),
    })
}
