//! Command implementations of the `attest` binary, callable from tests.

use std::io::Write;

use anyhow::{Context, Result, bail};
use attest_protocol::limits::MAX_INPUT_BYTES;
use attest_protocol::workload::{self, CATALOGUE, Job};
use serde::Serialize;

/// Reads a job input: the text itself, or `@PATH` for a file's bytes.
pub fn read_input(arg: &str) -> Result<Vec<u8>> {
    let bytes = match arg.strip_prefix('@') {
        Some(path) => {
            let meta = std::fs::metadata(path).with_context(|| format!("input file {path}"))?;
            if meta.len() > MAX_INPUT_BYTES as u64 {
                bail!(
                    "input file {path} is {} bytes; the limit is {MAX_INPUT_BYTES}",
                    meta.len()
                );
            }
            std::fs::read(path).with_context(|| format!("reading input file {path}"))?
        }
        None => arg.as_bytes().to_vec(),
    };
    Ok(bytes)
}

/// What `attest run --json` prints (schema `attest.run/1`).
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// Always `attest.run/1`.
    pub schema: &'static str,
    /// The model id.
    pub model: String,
    /// Input length in bytes.
    pub input_bytes: usize,
    /// Tokens generated.
    pub tokens: u32,
    /// The output text (printable ASCII).
    pub output: String,
    /// Hex of the output hash.
    pub output_hash: String,
    /// Hex of the trace root.
    pub trace_root: String,
    /// Steps in the trace.
    pub step_count: u64,
}

/// Runs `model` on `input` for `max_tokens` and reports the result.
pub fn run(model: &str, input: &[u8], max_tokens: u32) -> Result<RunReport> {
    let job = Job::new(model, input, max_tokens)?;
    let exec = workload::execute(&job);
    Ok(RunReport {
        schema: "attest.run/1",
        model: job.model().id.to_owned(),
        input_bytes: input.len(),
        tokens: max_tokens,
        output: String::from_utf8(exec.output.clone())
            .context("workload output is printable ASCII")?,
        output_hash: exec.output_hash.to_string(),
        trace_root: exec.trace_root.to_string(),
        step_count: exec.step_count(),
    })
}

/// Prints `report` for a person.
pub fn print_run(out: &mut impl Write, r: &RunReport) -> std::io::Result<()> {
    writeln!(out, "model        {}", r.model)?;
    writeln!(out, "input        {} bytes", r.input_bytes)?;
    writeln!(out, "output       {:?}", r.output)?;
    writeln!(out, "output hash  {}", r.output_hash)?;
    writeln!(out, "trace root   {}", r.trace_root)?;
    writeln!(out, "steps        {} ({} tokens)", r.step_count, r.tokens)
}

/// One catalogue row of `attest models --json` (schema `attest.models/1`).
#[derive(Debug, Serialize)]
pub struct ModelRow {
    /// The model id.
    pub id: &'static str,
    /// What it stands for.
    pub description: &'static str,
    /// Declared parameters.
    pub params: u64,
    /// Declared (and stand-in) layers.
    pub layers: u32,
    /// Declared bytes per parameter.
    pub bytes_per_param: u32,
    /// Stand-in hidden width.
    pub hidden: usize,
}

/// The catalogue.
pub fn models() -> Vec<ModelRow> {
    CATALOGUE
        .iter()
        .map(|m| ModelRow {
            id: m.id,
            description: m.description,
            params: m.params,
            layers: m.layers,
            bytes_per_param: m.bytes_per_param,
            hidden: m.hidden,
        })
        .collect()
}

/// What `attest init --json` prints (schema `attest.init/1`).
#[derive(Debug, Serialize)]
pub struct InitReport {
    /// Always `attest.init/1`.
    pub schema: &'static str,
    /// The node's libp2p PeerId.
    pub peer_id: String,
    /// The validator account (public key, hex).
    pub account: String,
    /// The home directory.
    pub home: String,
}

/// Creates a node home: `config.toml` and two new keys (node and account), mode 0600.
/// Refuses a home that already holds any of them, so no key is ever overwritten.
pub fn init(home: &std::path::Path, config: &crate::config::Config) -> Result<InitReport> {
    use crate::config::files;
    use std::os::unix::fs::PermissionsExt;

    config.validate(&home.join(files::CONFIG))?;
    for name in [files::CONFIG, files::NODE_KEY, files::ACCOUNT_KEY] {
        let path = home.join(name);
        if path.exists() {
            bail!(
                "{} is already initialised: {} exists",
                home.display(),
                path.display()
            );
        }
    }
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", home.display()))?;
    let node_key = crate::keyfile::generate()?;
    let account_key = crate::keyfile::generate()?;
    crate::keyfile::write(&home.join(files::NODE_KEY), &node_key)?;
    crate::keyfile::write(&home.join(files::ACCOUNT_KEY), &account_key)?;
    let config_path = home.join(files::CONFIG);
    std::fs::write(&config_path, config.to_commented_toml())
        .with_context(|| format!("writing {}", config_path.display()))?;
    Ok(InitReport {
        schema: "attest.init/1",
        peer_id: node_key.public().peer_id(),
        account: account_key.public().to_string(),
        home: home.display().to_string(),
    })
}

/// The inputs of `attest genesis`.
#[derive(Debug, Clone)]
pub struct GenesisArgs {
    /// The chain id.
    pub chain_id: attest_protocol::ChainId,
    /// Where to write the file.
    pub out: std::path::PathBuf,
    /// Validator homes (made by `attest init`).
    pub validators: Vec<std::path::PathBuf>,
    /// Extra funded accounts.
    pub fund: Vec<(attest_protocol::AccountId, attest_protocol::Amount)>,
    /// Each validator's bonded stake.
    pub stake: attest_protocol::Amount,
    /// Each validator's spendable balance.
    pub balance: attest_protocol::Amount,
    /// The chain's start time.
    pub genesis_time_ms: u64,
}

/// What `attest genesis --json` prints (schema `attest.genesis-report/1`).
#[derive(Debug, Serialize)]
pub struct GenesisReport {
    /// Always `attest.genesis-report/1`.
    pub schema: &'static str,
    /// The file written.
    pub out: String,
    /// The chain id.
    pub chain_id: String,
    /// The genesis hash.
    pub genesis_hash: String,
    /// Validators: account, PeerId, stake.
    pub validators: Vec<serde_json::Value>,
}

/// Parses `ACCOUNT=AMOUNT` (account as 64 hex characters, amount in tokens).
pub fn parse_fund(s: &str) -> Result<(attest_protocol::AccountId, attest_protocol::Amount)> {
    let (account, amount) = s
        .split_once('=')
        .with_context(|| format!("--fund {s:?}: expected ACCOUNT=AMOUNT"))?;
    // Clap shows only the outermost message of a value parser's error: put the cause in it.
    let account = account
        .parse()
        .map_err(|e| anyhow::anyhow!("--fund {s:?}: account: {e}"))?;
    let amount = amount
        .parse()
        .map_err(|e| anyhow::anyhow!("--fund {s:?}: amount: {e}"))?;
    Ok((account, amount))
}

/// Writes a genesis in which every validator home is staked and funded.
pub fn genesis(args: &GenesisArgs) -> Result<GenesisReport> {
    use crate::config::files;
    if args.validators.is_empty() {
        bail!("at least one --validator home is needed");
    }
    let mut balances = Vec::new();
    let mut stakes = Vec::new();
    let mut validators = Vec::new();
    for home in &args.validators {
        let node = crate::keyfile::read(&home.join(files::NODE_KEY))?.public();
        let account = crate::keyfile::read(&home.join(files::ACCOUNT_KEY))?.public();
        balances.push((account, args.balance));
        stakes.push((account, node, args.stake));
        validators.push(serde_json::json!({
            "account": account.to_string(),
            "peer_id": node.peer_id(),
            "stake": args.stake.0,
        }));
    }
    balances.extend(args.fund.iter().copied());
    let file = attest_chain::GenesisFile::new(
        args.chain_id.clone(),
        args.genesis_time_ms,
        attest_contracts_sim::Params::default(),
        balances,
        stakes,
    );
    // Refuse what the contract would refuse, before writing anything.
    attest_contracts_sim::State::from_genesis(&file.genesis)
        .map_err(|e| anyhow::anyhow!("genesis refused: {e}"))?;
    crate::genesis::write(&file, &args.out)?;
    Ok(GenesisReport {
        schema: "attest.genesis-report/1",
        out: args.out.display().to_string(),
        chain_id: args.chain_id.to_string(),
        genesis_hash: file.hash().to_string(),
        validators,
    })
}

/// The inputs of `attest node`, as given on the command line.
#[derive(Debug, Clone)]
pub struct NodeArgs {
    /// The node home (from `attest init`).
    pub home: std::path::PathBuf,
    /// The genesis file.
    pub genesis: std::path::PathBuf,
    /// Listen addresses overriding the config file.
    pub listen: Vec<String>,
    /// Bootnodes added to the config file's.
    pub bootnodes: Vec<String>,
    /// The HTTP API address, overriding the config file's.
    pub api: Option<std::net::SocketAddr>,
}

/// What `attest node` runs: the node's settings and where its HTTP API listens.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// Everything the node loop needs.
    pub settings: crate::shell::NodeSettings,
    /// The HTTP API address (the flag if given, else the config file's).
    pub api: std::net::SocketAddr,
}

/// Loads everything `attest node` needs, naming the file and key of any problem.
pub fn node_settings(args: &NodeArgs) -> Result<NodeSetup> {
    use crate::config::{Config, files};
    let config = Config::load(&args.home.join(files::CONFIG))?;
    let genesis = crate::genesis::load(&args.genesis)?;
    let node_key = crate::keyfile::read(&args.home.join(files::NODE_KEY))?;
    let account_key = crate::keyfile::read(&args.home.join(files::ACCOUNT_KEY))?;
    let listen = if args.listen.is_empty() {
        config.listen.clone()
    } else {
        args.listen.clone()
    };
    let parse = |what: &str, s: &String| -> Result<libp2p::Multiaddr> {
        s.parse()
            .map_err(|e| anyhow::anyhow!("{what} {s:?} is not a multiaddr: {e}"))
    };
    let listen = listen
        .iter()
        .map(|s| parse("listen address", s))
        .collect::<Result<Vec<_>>>()?;
    let bootnodes = config
        .bootnodes
        .iter()
        .chain(&args.bootnodes)
        .map(|s| parse("bootnode", s))
        .collect::<Result<Vec<_>>>()?;
    let core = attest_core::CoreConfig {
        idle_block_interval_ms: config.idle_block_interval_ms,
        mempool_max_txs: config.mempool_max_txs,
        mempool_max_bytes: config.mempool_max_bytes,
        mempool_ttl_ms: config.mempool_ttl_ms,
        market: attest_core::market::MarketConfig {
            serve: config.serve_jobs,
            ..attest_core::market::MarketConfig::default()
        }
        .with_cheats(config.danger_cheat, config.danger_false_verdicts)
        .with_context(|| format!("config {}", args.home.join(files::CONFIG).display()))?,
        ..attest_core::CoreConfig::default()
    };
    if config.danger_cheat.is_some() || config.danger_false_verdicts.is_some() {
        tracing::warn!("danger_* settings are on: this node cheats on purpose (test only)");
    }
    let profile = attest_core::accel::DeviceProfile::find(&config.device)?;
    let device = crate::accel_pool::DeviceConfig::new(profile, config.time_scale);
    let mut core = core;
    core.market.advert = Some(advert_terms(
        &node_key,
        profile,
        config.time_scale,
        attest_protocol::Amount(config.price_per_token),
    ));
    let settings = crate::shell::NodeSettings {
        node_key,
        account_key,
        genesis,
        data_dir: args.home.join(files::DATA),
        listen,
        bootnodes,
        core,
        device,
    };
    Ok(NodeSetup {
        settings,
        api: args.api.unwrap_or(config.api),
    })
}

/// What a node with `profile` advertises: every model the device holds, its slots, and its
/// decode speed on the mid-size model (the one most jobs use).
fn advert_terms(
    node_key: &attest_protocol::SecretKey,
    profile: &'static attest_core::accel::DeviceProfile,
    scale: attest_core::accel::TimeScale,
    price_per_token: attest_protocol::Amount,
) -> attest_core::node::adverts::AdvertTerms {
    let models: Vec<_> = profile.servable_models().collect();
    let reference = models
        .iter()
        .find(|m| m.id == "attest-base-8b")
        .or(models.first())
        .copied();
    attest_core::node::adverts::AdvertTerms {
        node: node_key.public(),
        device: profile.device_name(),
        models: models
            .iter()
            .filter_map(|m| attest_protocol::ModelId::new(m.id).ok())
            .collect(),
        slots: profile.slots,
        price_per_token,
        tokens_per_sec_milli: reference.map_or(0, |m| {
            attest_core::accel::tokens_per_sec_milli(profile, m, scale)
        }),
    }
}

/// Runs a node and its HTTP API until SIGINT or SIGTERM.
pub fn run_node(args: &NodeArgs) -> Result<()> {
    let setup = node_settings(args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(serve_node(setup))
}

/// How long the API may take to finish requests in flight once the node stops: requests wait
/// at most 10 s for the node, and a client that stalls must not keep the process alive.
const API_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds the API, starts the node, and runs both until a signal or until either one stops;
/// whichever ends first ends the other, so a node whose store failed does not leave an API
/// answering for it.
async fn serve_node(setup: NodeSetup) -> Result<()> {
    // Bound before the node opens its store or dials anyone: a taken port is a plain error.
    let listener = tokio::net::TcpListener::bind(setup.api)
        .await
        .with_context(|| format!("cannot bind the HTTP API to {}", setup.api))?;
    let api_addr = listener.local_addr().context("the HTTP API listener")?;
    if !api_addr.ip().is_loopback() {
        tracing::warn!(api = %api_addr, "the HTTP API is reachable beyond this machine");
    }
    let (node, handle) = crate::shell::Node::start(setup.settings)?;
    tracing::info!(peer_id = %node.peer_id(), api = %api_addr, "node started");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let node_task = async {
        let result = node.run(stopping(stopped.clone())).await;
        stop.send_replace(true);
        result
    };
    // A task of its own, so accepting connections never waits for a busy turn of the loop.
    let mut serve = tokio::spawn(crate::api::serve(
        listener,
        handle,
        stopping(stopped.clone()),
    ));
    let api_task = async {
        let drain_limit = async {
            stopping(stopped.clone()).await;
            tokio::time::sleep(API_DRAIN).await;
        };
        let result = tokio::select! {
            r = &mut serve => match r {
                Ok(served) => served.context("HTTP API"),
                Err(e) => Err(anyhow::anyhow!("HTTP API task: {e}")),
            },
            () = drain_limit => {
                tracing::warn!("HTTP API requests still open at shutdown; dropped");
                serve.abort();
                Ok(())
            }
        };
        stop.send_replace(true);
        result
    };
    let signal_task = async {
        tokio::select! {
            signal = shutdown_signal() => tracing::info!(signal, "shutting down on a signal"),
            () = stopping(stopped.clone()) => {}
        }
        stop.send_replace(true);
    };
    let (node_result, api_result, ()) = tokio::join!(node_task, api_task, signal_task);
    node_result.and(api_result)
}

/// Resolves once `stop` turns true (or its sender is gone, which only happens on the way out).
async fn stopping(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Resolves on SIGINT or SIGTERM, naming which, so a log shows why a node stopped.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
