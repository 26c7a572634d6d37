//! `attest testnet add-node` and `remove-node`: a provider joining the running testnet as a
//! new machine would, and leaving it.
//!
//! Joining: a new home (keys from the testnet's seed, the next two ports, every other node a
//! bootnode), its account funded by a transfer from the testnet's first client (the faucet),
//! the node started (by state sync from node 0's newest block when node 0 offers a snapshot,
//! else by block sync from genesis), then, once it has caught up, `Stake` from its own
//! account binding its node key and device; done when its advert is in every running node's
//! book. Leaving: `Unstake` of all its bonded stake, then the node is stopped and marked
//! removed (`up` leaves it stopped). Every step goes through the nodes' APIs, as
//! `attest transfer` and `attest stake` do.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use attest_node::config::files;
use attest_protocol::Amount;
use attest_protocol::tx::{Action, Stake, Transfer, Unstake};

use crate::client::{Api, Opener};
use crate::launcher::{self, Outcome, absolute_dir};
use crate::layout::{self, GENESIS_FILE, LOG_FILE, Layout};
use crate::procs;
use crate::report::{self, Membership, NodeState, Report};

/// How long a transaction of these commands may take to commit.
const COMMIT_WAIT: Duration = Duration::from_secs(30);
/// Tokens the faucet sends a joining node on top of its stake, for fees.
const SPENDING_TOKENS: u64 = 1_000;
/// How often the joins look again.
const POLL: Duration = Duration::from_millis(200);

/// The first running node's API: where the transactions go.
fn gateway(dir: &Path, layout: &Layout, except: Option<usize>) -> Result<(usize, Api)> {
    let rows = report::probe_all(dir, layout);
    let row = rows
        .iter()
        .find(|r| r.state == NodeState::Up && Some(r.index) != except)
        .ok_or_else(|| anyhow!("no other node of the testnet is up: `attest testnet up` first"))?;
    Ok((row.index, Api::new(&row.api_url)?))
}

/// `attest testnet add-node`: joins a new node on `device` and waits up to `timeout` for it
/// to catch up and for its advert to reach every book.
pub fn add_node(
    dir: &Path,
    device: Option<&str>,
    timeout: Duration,
    exe: &Path,
) -> Result<Outcome> {
    let started = Instant::now();
    let dir = absolute_dir(dir)?;
    let mut layout = Layout::load(&dir)?;
    let (_, api) = gateway(&dir, &layout, None)?;
    let faucet = layout
        .clients
        .first()
        .map(|c| dir.join(&c.key))
        .ok_or_else(|| anyhow!("the testnet has no client key to fund the new node from"))?;
    let watch_rate =
        attest_node::config::Config::load(&layout.home(&dir, 0).join(files::CONFIG))?.watch_rate;
    let node = layout::new_node(&dir, &layout, device, watch_rate)?;
    let i = node.index;
    layout.nodes.push(node);
    layout.save(&dir)?;
    let home = layout.home(&dir, i);
    let account_key = attest_node::keyfile::read(&home.join(files::ACCOUNT_KEY))?;
    let node_key = attest_node::keyfile::read(&home.join(files::NODE_KEY))?;
    let account = account_key.public();
    tracing::info!(node = i, %account, device = %layout.nodes[i].device, "new node home written");

    let stake = Amount::tokens(layout::STAKE_TOKENS).context("stake overflows")?;
    let spending = Amount::tokens(SPENDING_TOKENS).context("amount overflows")?;
    let funding = stake.checked_add(spending).context("funding overflows")?;
    let mut faucet = Opener::new(api.url(), &faucet)?;
    let funded = faucet.send_committed(
        Action::Transfer(Transfer {
            to: account,
            amount: funding,
        }),
        COMMIT_WAIT,
    )?;
    tracing::info!(node = i, height = funded.height.0, "funded by the faucet");

    // State sync from node 0's head when it offers a snapshot; else block sync from genesis.
    let head = api.status()?;
    let trust = head
        .offered_snapshot
        .map(|_| (head.height.0, head.latest_block_hash.to_string()));
    let how = match &trust {
        Some((h, _)) => format!("state sync from height {h}"),
        None => "block sync from genesis".to_owned(),
    };
    let launch = procs::Launch {
        exe: exe.to_owned(),
        home: home.clone(),
        genesis: dir.join(GENESIS_FILE),
        log: home.join(LOG_FILE),
        trust,
    };
    let sync_started = Instant::now();
    let mut child = launcher::start(&layout, i, &launch)?;
    let deadline = started + timeout;
    let own = Api::new(&layout.nodes[i].api_url)?;
    loop {
        if let Some(exit) = child.try_wait().context("checking the new node")? {
            procs::remove_pid(&home)?;
            bail!(
                "node {i} exited ({exit}) while joining; {}",
                launcher::tail_of(&dir, &layout, i)
            );
        }
        if let Ok(s) = own.status()
            && s.state_sync.is_none()
            && s.height >= head.height
        {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "node {i} did not catch up with height {} within {} s (it is left running); {}",
                head.height.0,
                timeout.as_secs(),
                launcher::tail_of(&dir, &layout, i)
            );
        }
        std::thread::sleep(POLL);
    }
    let sync_ms = elapsed_ms(sync_started);
    tracing::info!(node = i, sync_ms, "caught up");

    let capability = attest_core::accel::DeviceProfile::find(&layout.nodes[i].device)?.capability();
    let mut own_session = Opener::new(own.url(), &home.join(files::ACCOUNT_KEY))?;
    let staked = own_session.send_committed(
        Action::Stake(Stake::new(
            own_session.chain(),
            &node_key,
            account,
            stake,
            capability,
        )),
        COMMIT_WAIT,
    )?;
    tracing::info!(node = i, height = staked.height.0, "staked");
    let advert_started = Instant::now();
    loop {
        let rows = report::probe_all(&dir, &layout);
        let up: Vec<_> = rows.iter().filter(|r| r.state == NodeState::Up).collect();
        let mut missing = Vec::new();
        for row in &up {
            let book = Api::new(&row.api_url)?.adverts()?;
            if !book.adverts.iter().any(|a| a.provider == account) {
                missing.push(row.index);
            }
        }
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "node {i} is staked (height {}) but its advert is not in the books of nodes \
                 {missing:?} after {} s; `attest provider status --node {}` says why",
                staked.height.0,
                timeout.as_secs(),
                layout.nodes[i].api_url
            );
        }
        std::thread::sleep(POLL);
    }
    let membership = Membership {
        node: i,
        account: account.to_string(),
        how,
        tx_height: Some(funded.height.0),
        staked_at: Some(staked.height.0),
        sync_ms: Some(sync_ms),
        advert_ms: Some(elapsed_ms(advert_started)),
        total_ms: elapsed_ms(started),
    };
    let mut report = Report::new("add-node", &dir, &layout, report::probe_all(&dir, &layout));
    report.membership = Some(membership);
    Ok(Outcome {
        report,
        failure: None,
    })
}

/// `attest testnet remove-node I`: unstakes node `i`'s whole bonded stake (through another
/// running node), stops it (SIGTERM, SIGKILL after `grace`) and marks it removed.
pub fn remove_node(dir: &Path, i: usize, grace: Duration) -> Result<Outcome> {
    let started = Instant::now();
    let dir = absolute_dir(dir)?;
    let mut layout = Layout::load(&dir)?;
    let Some(node) = layout.nodes.get(i) else {
        bail!(
            "the testnet has no node {i} (it has {})",
            layout.nodes.len()
        );
    };
    if node.removed {
        bail!("node {i} was already removed");
    }
    let (_, api) = gateway(&dir, &layout, Some(i))?;
    let key = layout.home(&dir, i).join(files::ACCOUNT_KEY);
    let mut session = Opener::new(api.url(), &key)?;
    let bonded = api
        .account(&session.account())?
        .stake
        .map_or(Amount::ZERO, |s| s.bonded);
    let unstaked = if bonded.0 > 0 {
        let tx =
            session.send_committed(Action::Unstake(Unstake { amount: bonded }), COMMIT_WAIT)?;
        tracing::info!(node = i, height = tx.height.0, %bonded, "unstaked");
        Some(tx.height.0)
    } else {
        None
    };
    let (stopped, survivors) = launcher::stop(&dir, &layout, grace, |n| n == i)?;
    if !survivors.is_empty() || stopped.iter().any(|s| procs::alive(s.pid)) {
        bail!("node {i} could not be stopped (pids {survivors:?}); it stays in the testnet");
    }
    procs::remove_pid(&layout.home(&dir, i))?;
    layout.nodes[i].removed = true;
    layout.save(&dir)?;
    let mut report = Report::new(
        "remove-node",
        &dir,
        &layout,
        report::probe_all(&dir, &layout),
    );
    report.membership = Some(Membership {
        node: i,
        account: session.account().to_string(),
        how: "unstaked".to_owned(),
        tx_height: unstaked,
        staked_at: None,
        sync_ms: None,
        advert_ms: None,
        total_ms: elapsed_ms(started),
    });
    Ok(Outcome {
        report,
        failure: None,
    })
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
