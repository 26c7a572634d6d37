//! The node commands: `attest run`, `init`, `genesis`, `node` and `models`: their arguments,
//! what each does (callable from tests) and what each prints.

use std::io::Write;

use anyhow::{Context, Result, bail};
use attest_protocol::limits::MAX_INPUT_BYTES;
use attest_protocol::workload::{self, CATALOGUE, Job};
use serde::Serialize;

use super::print_json;

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
pub fn init(home: &std::path::Path, config: &attest_node::config::Config) -> Result<InitReport> {
    use attest_node::config::files;
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
    let node_key = attest_node::keyfile::generate()?;
    let account_key = attest_node::keyfile::generate()?;
    attest_node::keyfile::write(&home.join(files::NODE_KEY), &node_key)?;
    attest_node::keyfile::write(&home.join(files::ACCOUNT_KEY), &account_key)?;
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
    use attest_node::config::files;
    if args.validators.is_empty() {
        bail!("at least one --validator home is needed");
    }
    let mut balances = Vec::new();
    let mut stakes = Vec::new();
    let mut validators = Vec::new();
    for home in &args.validators {
        let node = attest_node::keyfile::read(&home.join(files::NODE_KEY))?.public();
        let account = attest_node::keyfile::read(&home.join(files::ACCOUNT_KEY))?.public();
        // The stake binds the device the home's config serves with.
        let config = attest_node::config::Config::load(&home.join(files::CONFIG))?;
        let device = attest_core::accel::DeviceProfile::find(&config.device)?.capability();
        balances.push((account, args.balance));
        stakes.push((account, node, args.stake, device));
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
    attest_node::genesis::write(&file, &args.out)?;
    Ok(GenesisReport {
        schema: "attest.genesis-report/1",
        out: args.out.display().to_string(),
        chain_id: args.chain_id.to_string(),
        genesis_hash: file.hash().to_string(),
        validators,
    })
}

/// The node commands, flattened into `attest`.
#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Run a catalogue model on an input and print its output and trace root.
    Run {
        /// The model id (see `attest models`).
        #[arg(long, default_value = "attest-base-8b")]
        model: String,
        /// The input: text, or @PATH to read a file's bytes.
        #[arg(long)]
        input: String,
        /// Tokens to generate.
        #[arg(long, default_value_t = 32)]
        max_tokens: u32,
    },
    /// Create a node home: config.toml, a node key and a validator account key.
    Init {
        /// The home directory to create.
        #[arg(long)]
        home: std::path::PathBuf,
        /// libp2p listen multiaddr (repeatable); default /ip4/127.0.0.1/tcp/26656.
        #[arg(long)]
        listen: Vec<String>,
        /// HTTP API address; default 127.0.0.1:26657.
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
    },
    /// Write a genesis file staking and funding each validator home.
    Genesis {
        /// The chain id (a-z, 0-9 and -, up to 32 characters).
        #[arg(long)]
        chain_id: attest_protocol::ChainId,
        /// Where to write the genesis (never overwritten).
        #[arg(long)]
        out: std::path::PathBuf,
        /// A validator home made by `attest init` (repeatable).
        #[arg(long = "validator", required = true)]
        validators: Vec<std::path::PathBuf>,
        /// Fund an extra account: ACCOUNT=AMOUNT, amount in tokens (repeatable).
        #[arg(long, value_parser = parse_fund)]
        fund: Vec<(attest_protocol::AccountId, attest_protocol::Amount)>,
        /// Each validator's bonded stake, in tokens.
        #[arg(long, default_value = "1000")]
        stake: attest_protocol::Amount,
        /// Each validator's spendable balance, in tokens.
        #[arg(long, default_value = "1000")]
        balance: attest_protocol::Amount,
        /// The chain's start time in ms since the Unix epoch; default now.
        #[arg(long)]
        genesis_time_ms: Option<u64>,
    },
    /// Run a node (logs on stderr; RUST_LOG sets the level).
    Node {
        /// The node home (from `attest init`).
        #[arg(long)]
        home: std::path::PathBuf,
        /// The genesis file (from `attest genesis`).
        #[arg(long)]
        genesis: std::path::PathBuf,
        /// libp2p listen multiaddr (repeatable); replaces the config file's.
        #[arg(long)]
        listen: Vec<String>,
        /// Peer to dial, a multiaddr ending in /p2p/<PeerId> (repeatable).
        #[arg(long = "bootnode")]
        bootnodes: Vec<String>,
        /// HTTP API address, e.g. 127.0.0.1:26657; replaces the config file's.
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
        /// Join by state sync: the height of a block you trust (read from a node you trust,
        /// e.g. `attest status`). Used only while the node's store is empty.
        #[arg(long, requires = "trust_hash")]
        trust_height: Option<u64>,
        /// The hash of that block.
        #[arg(long, requires = "trust_height")]
        trust_hash: Option<attest_protocol::BlockHash>,
    },
    /// List the model catalogue.
    Models,
}

impl NodeCommand {
    /// The command's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Run { .. } => "run",
            Self::Init { .. } => "init",
            Self::Genesis { .. } => "genesis",
            Self::Node { .. } => "node",
            Self::Models => "models",
        }
    }
}

/// Runs a node command, printing to `out`.
pub fn run_command(command: NodeCommand, g: &super::Globals, out: &mut impl Write) -> Result<()> {
    g.refuse_node(command.name())?;
    let json = g.json;
    match command {
        NodeCommand::Run {
            model,
            input,
            max_tokens,
        } => {
            let input = read_input(&input)?;
            let report = run(&model, &input, max_tokens)?;
            if json {
                print_json(out, &report)?;
            } else {
                print_run(out, &report)?;
            }
        }
        NodeCommand::Init { home, listen, api } => {
            let mut config = attest_node::config::Config::default();
            if !listen.is_empty() {
                config.listen = listen;
            }
            if let Some(api) = api {
                config.api = api;
            }
            let report = init(&home, &config)?;
            if json {
                print_json(out, &report)?;
            } else {
                writeln!(out, "home     {}", report.home)?;
                writeln!(out, "peer id  {}", report.peer_id)?;
                writeln!(out, "account  {}", report.account)?;
            }
        }
        NodeCommand::Genesis {
            chain_id,
            out: path,
            validators,
            fund,
            stake,
            balance,
            genesis_time_ms,
        } => {
            let genesis_time_ms = genesis_time_ms.unwrap_or_else(attest_node::shell::now_ms);
            let args = GenesisArgs {
                chain_id,
                out: path,
                validators,
                fund,
                stake,
                balance,
                genesis_time_ms,
            };
            let report = genesis(&args)?;
            if json {
                print_json(out, &report)?;
            } else {
                writeln!(
                    out,
                    "wrote {} (chain {}, hash {})",
                    report.out, report.chain_id, report.genesis_hash
                )?;
                for v in &report.validators {
                    writeln!(out, "validator {} {}", v["account"], v["peer_id"])?;
                }
            }
        }
        NodeCommand::Node {
            home,
            genesis,
            listen,
            bootnodes,
            api,
            trust_height,
            trust_hash,
        } => {
            super::init_logging();
            if trust_height == Some(0) {
                anyhow::bail!("--trust-height must be above 0: the genesis has no block to trust");
            }
            attest_node::process::run_node(&attest_node::process::NodeArgs {
                home,
                genesis,
                listen,
                bootnodes,
                api,
                trust: trust_height.map(attest_protocol::Height).zip(trust_hash),
            })?;
        }
        NodeCommand::Models => {
            let rows = models();
            if json {
                let doc = serde_json::json!({ "schema": "attest.models/1", "models": rows });
                print_json(out, &doc)?;
            } else {
                writeln!(
                    out,
                    "{:<18} {:>7} {:>6}  description",
                    "model", "params", "layers"
                )?;
                for m in rows {
                    let billions = m.params as f64 / 1e9;
                    writeln!(
                        out,
                        "{:<18} {:>6.1}B {:>6}  {}",
                        m.id, billions, m.layers, m.description
                    )?;
                }
            }
        }
    }
    Ok(())
}
