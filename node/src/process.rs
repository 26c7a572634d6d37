//! Running a node process: its settings from a node home, a config file, key files and a
//! genesis file (naming the file of any problem), and the tokio runtime that runs the node loop
//! and its HTTP API until a signal, each stopping the other. `attest node` calls
//! [`run_node`]; this is the only place a runtime is built.

use anyhow::{Context, Result};

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
    /// Join by state sync towards this block (height, hash) if the store is empty.
    pub trust: Option<(attest_protocol::Height, attest_protocol::BlockHash)>,
}

/// What `attest node` runs: the node's settings and where its HTTP API listens.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    /// Everything the node loop needs.
    pub settings: crate::shell::NodeSettings,
    /// The HTTP API address (the flag if given, else the config file's).
    pub api: std::net::SocketAddr,
    /// The HTTP API's admission limits.
    pub api_limits: crate::api::LimitsConfig,
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
            // The range was validated: 0.0 to 1.0, so 0 to 1,000,000 parts per million.
            watch_rate_ppm: (config.watch_rate * 1e6).round() as u32,
            ..attest_core::market::MarketConfig::default()
        }
        .with_cheats(config.danger_cheat, config.danger_false_verdicts)
        .with_context(|| format!("config {}", args.home.join(files::CONFIG).display()))?,
        snapshot_interval_blocks: config.snapshot_interval_blocks,
        state_sync: args
            .trust
            .map(|(height, hash)| attest_core::statesync::Trust { height, hash }),
        ..attest_core::CoreConfig::default()
    };
    if config.danger_cheat.is_some() || config.danger_false_verdicts.is_some() {
        tracing::warn!("danger_* settings are on: this node cheats on purpose (test only)");
    }
    if let Some(skew) = config.danger_clock_skew_ms {
        if !cfg!(feature = "cheats") {
            anyhow::bail!(
                "config {}: danger_clock_skew_ms is a test-only setting, and this build has no \
                 test-only settings (build with --features cheats)",
                args.home.join(files::CONFIG).display()
            );
        }
        tracing::warn!(
            skew_ms = skew,
            "danger_clock_skew_ms: this node's clock is wrong on purpose (test only)"
        );
        crate::shell::set_clock_skew_ms(skew);
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
        snapshots: (config.snapshot_interval_blocks, config.snapshots_kept),
    };
    Ok(NodeSetup {
        settings,
        api: args.api.unwrap_or(config.api),
        api_limits: config.api_limits(),
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
        slots: attest_core::accel::batching::sequences_for_any_job(profile),
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
        crate::api::Limits::new(setup.api_limits),
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
