//! The account commands: `attest account` (what the ledger holds for an account),
//! `attest transfer`, `attest stake` and `attest unstake`. Each transaction pays the chain's
//! minimum fee (`GET /v1/params`), is followed until a block commits it, and the account is
//! read back from the ledger to show what it did.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use serde::Serialize;
use serde_json::json;

use attest_node::api::accounts::AccountSnapshot;
use attest_node::api::market::{AdvertReach, AdvertView};
use attest_node::config::files;
use attest_protocol::tx::{Action, Stake, Transfer, Unstake};
use attest_protocol::{AccountId, Amount};

use super::Globals;
use super::client::{PROOF_WAIT, check_json, match_account, print_check};
use crate::client::{self, Api, Committed, DEFAULT_KEY, Opener};

/// Account commands, flattened into `attest`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// An account: balance, nonce, stake and its unbonding, role (validator, provider), bound
    /// node and device, and its record as provider and client. With --verify, the account,
    /// stake and record entries are proven against the state root of a certified block and
    /// checked here, not taken on the node's word.
    Account {
        /// The account (its public key, hex); default the account of --key.
        id: Option<String>,
        /// A key file whose account to show (default the local testnet's first client).
        #[arg(long, conflicts_with = "id")]
        key: Option<PathBuf>,
        /// Check the entries' proofs and the certifying block's certificate client-side.
        #[arg(long)]
        verify: bool,
    },
    /// Move tokens from the key's account to another account.
    Transfer {
        /// The receiving account (public key, hex).
        #[arg(long)]
        to: AccountId,
        /// How much, in tokens (up to six decimals).
        #[arg(long)]
        amount: Amount,
        /// The sending account's key.
        #[arg(long, default_value = DEFAULT_KEY)]
        key: PathBuf,
        /// Seconds to wait for a block to commit it.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Bond stake from an account and bind a node to it: the node key and the device of
    /// --home (from `attest init`). With at least the chain's `min_stake` bonded the account
    /// provides and checks; the top `max_validators` stakes also validate.
    Stake {
        /// How much to bond, in tokens.
        #[arg(long)]
        amount: Amount,
        /// The node home whose node key and device (config.toml) the stake binds.
        #[arg(long)]
        home: PathBuf,
        /// The staking account's key (default the home's account key).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Seconds to wait for a block to commit it.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// A provider's standing, for "my node runs, why does it get no work?".
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// Start unbonding stake: it stays slashable and returns to the balance after the
    /// chain's `unbonding_ms`.
    Unstake {
        /// How much to unbond, in tokens.
        #[arg(long)]
        amount: Amount,
        /// The staked account's key.
        #[arg(long, conflicts_with = "home")]
        key: Option<PathBuf>,
        /// A node home whose account key to use instead of --key.
        #[arg(long)]
        home: Option<PathBuf>,
        /// Seconds to wait for a block to commit it.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

/// `attest provider ...`.
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Every condition for getting work, checked: staked and eligible, bound to the node at
    /// --node, in the validator set, on probation or banned, which models the bound device
    /// holds, advertising, and how many of the node's peers hold its advert (asked now); its
    /// jobs and slashes. Ask the provider's own node (--node).
    Status {
        /// The provider's account (default: the account of --home, else the node's own).
        account: Option<String>,
        /// A node home whose account to check.
        #[arg(long, conflicts_with = "account")]
        home: Option<PathBuf>,
    },
}

/// Runs an account command, printing to `out`.
pub fn run(command: AccountCommand, g: &Globals, out: &mut impl Write) -> Result<()> {
    let node = g.node();
    match command {
        AccountCommand::Account { id, key, verify } => {
            let id = match (id, key) {
                (Some(id), _) => id.parse().map_err(|e| anyhow!("account {id:?}: {e}"))?,
                (None, key) => {
                    let path = key.unwrap_or_else(|| PathBuf::from(DEFAULT_KEY));
                    attest_node::keyfile::read(&path)?.public()
                }
            };
            account(&id, node, verify, g.json, out)
        }
        AccountCommand::Transfer {
            to,
            amount,
            key,
            timeout,
        } => {
            let mut session = Opener::new(node, &key)?;
            let from = session.account();
            let tx = session.send_committed(
                Action::Transfer(Transfer { to, amount }),
                Duration::from_secs(timeout),
            )?;
            let after = session.api().account(&from)?;
            if g.json {
                return super::print_json(
                    out,
                    &json!({
                        "schema": "attest.transfer/1",
                        "tx": tx,
                        "from": from,
                        "to": to,
                        "amount": amount,
                        "balance_after": after.balance,
                    }),
                );
            }
            say_committed(out, &tx)?;
            writeln!(
                out,
                "moved {amount} tokens from {from} to {to}; {from} now holds {} tokens",
                after.balance
            )?;
            Ok(())
        }
        AccountCommand::Stake {
            amount,
            home,
            key,
            timeout,
        } => {
            let key = key.unwrap_or_else(|| home.join(files::ACCOUNT_KEY));
            let node_key = attest_node::keyfile::read(&home.join(files::NODE_KEY))?;
            let device = device_of(&home)?;
            let mut session = Opener::new(node, &key)?;
            let account = session.account();
            let stake = Stake::new(session.chain(), &node_key, account, amount, device.clone());
            let tx = session.send_committed(Action::Stake(stake), Duration::from_secs(timeout))?;
            let after = session.api().account(&account)?;
            let bonded = after.stake.as_ref().map_or(Amount::ZERO, |s| s.bonded);
            if g.json {
                return super::print_json(
                    out,
                    &json!({
                        "schema": "attest.stake/1",
                        "tx": tx,
                        "account": account,
                        "amount": amount,
                        "bonded_after": bonded,
                        "node_peer_id": node_key.public().peer_id(),
                        "device": device.device,
                        "account_after": after,
                    }),
                );
            }
            say_committed(out, &tx)?;
            writeln!(
                out,
                "{account} bonded {amount} tokens (now {bonded}), bound to node {} with device {}",
                node_key.public().peer_id(),
                device.device.as_str()
            )?;
            writeln!(out, "  {}", role(&after, session.api())?)?;
            Ok(())
        }
        AccountCommand::Provider {
            command: ProviderCommand::Status { account, home },
        } => {
            let api = Api::new(node)?;
            let account = match (account, home) {
                (Some(id), _) => id.parse().map_err(|e| anyhow!("account {id:?}: {e}"))?,
                (None, Some(home)) => {
                    attest_node::keyfile::read(&home.join(files::ACCOUNT_KEY))?.public()
                }
                (None, None) => {
                    let own = api.status()?.account;
                    own.parse()
                        .map_err(|e| anyhow!("the node's account {own:?}: {e}"))?
                }
            };
            let report = provider_status(&api, account)?;
            if g.json {
                return super::print_json(out, &report);
            }
            print_provider_status(&report, out)
        }
        AccountCommand::Unstake {
            amount,
            key,
            home,
            timeout,
        } => {
            let key = match (key, home) {
                (Some(key), _) => key,
                (None, Some(home)) => home.join(files::ACCOUNT_KEY),
                (None, None) => PathBuf::from(DEFAULT_KEY),
            };
            let mut session = Opener::new(node, &key)?;
            let account = session.account();
            let tx = session.send_committed(
                Action::Unstake(Unstake { amount }),
                Duration::from_secs(timeout),
            )?;
            let after = session.api().account(&account)?;
            let stake = after.stake.as_ref();
            let bonded = stake.map_or(Amount::ZERO, |s| s.bonded);
            let release = stake
                .and_then(|s| s.unbonding.last())
                .map(|u| u.release_at_ms);
            if g.json {
                return super::print_json(
                    out,
                    &json!({
                        "schema": "attest.unstake/1",
                        "tx": tx,
                        "account": account,
                        "amount": amount,
                        "bonded_after": bonded,
                        "release_at_ms": release,
                    }),
                );
            }
            say_committed(out, &tx)?;
            let release =
                release.map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms, {}", from_now(ms)));
            writeln!(
                out,
                "{account} unbonds {amount} tokens (still slashable until released at block \
                 time {release}); {bonded} tokens stay bonded",
            )?;
            Ok(())
        }
    }
}

/// The device the home's config serves with, as a stake declares it.
fn device_of(home: &Path) -> Result<attest_protocol::tx::Capability> {
    let path = home.join(files::CONFIG);
    let config = attest_node::config::Config::load(&path)?;
    let profile = attest_core::accel::DeviceProfile::find(&config.device)
        .with_context(|| format!("device in {}", path.display()))?;
    Ok(profile.capability())
}

/// A block time as seen from this machine's clock: `in ~N s` or `N s ago`.
fn from_now(ms: u64) -> String {
    let now = attest_node::shell::now_ms();
    if ms >= now {
        format!("in ~{} s", (ms - now).div_ceil(1000))
    } else {
        format!("{} s ago", (now - ms) / 1000)
    }
}

fn say_committed(out: &mut impl Write, tx: &Committed) -> Result<()> {
    writeln!(
        out,
        "committed at height {}: transaction {} (nonce {}, fee {} tokens)",
        tx.height.0, tx.hash, tx.nonce, tx.fee
    )?;
    Ok(())
}

/// What the account does in the network: validator (with its power), provider and checker,
/// or neither, and why not.
fn role(v: &AccountSnapshot, api: &Api) -> Result<String> {
    let Some(stake) = &v.stake else {
        return Ok(
            "role: client only (no stake: it can open jobs, not provide or check them)".into(),
        );
    };
    let min_stake = api.params()?.params.min_stake;
    let provides = if stake.eligible {
        format!("provider and checker on {}", stake.device.as_str())
    } else if stake.status != "active" {
        format!("not providing: its stake is {}", stake.status)
    } else {
        format!(
            "not providing: {} tokens bonded, the chain's min_stake is {min_stake}",
            stake.bonded
        )
    };
    Ok(match v.validator_power {
        Some(power) => format!("role: validator (power {power}), {provides}"),
        None => format!("role: {provides}; not in the validator set"),
    })
}

/// The account's newest parts in jobs, one line each.
fn print_recent_jobs(v: &AccountSnapshot, out: &mut impl Write) -> Result<()> {
    for (height, role, job) in &v.recent_jobs {
        writeln!(out, "  job {job} as {role} at height {}", height.0)?;
    }
    Ok(())
}

/// `attest account`.
fn account(
    id: &AccountId,
    node: &str,
    verify: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let api = Api::new(node)?;
    let v = if verify {
        api.account_proven(id)?
    } else {
        api.account(id)?
    };
    let check = match (&v.proof, verify) {
        (Some(proof), true) => Some(client::check_proof(&api, proof, PROOF_WAIT)?),
        (None, true) => anyhow::bail!("the node answered without the proofs asked for"),
        _ => None,
    };
    if let Some(c) = &check {
        match_account(&v, c)?;
    }
    if json {
        let verified = check.as_ref().map(check_json);
        return super::print_json(
            out,
            &json!({ "schema": "attest.account/1", "account": v, "verified": verified }),
        );
    }
    writeln!(out, "account {}", v.account)?;
    writeln!(out, "  balance {} tokens, nonce {}", v.balance, v.nonce.0)?;
    match &v.stake {
        Some(s) => {
            writeln!(
                out,
                "  stake {} tokens bonded, {}, {} disputes lost, {} probation jobs left",
                s.bonded, s.status, s.disputes_lost, s.probation_left
            )?;
            for u in &s.unbonding {
                writeln!(
                    out,
                    "  unbonding {} tokens, released at block time {} ms ({})",
                    u.amount,
                    u.release_at_ms,
                    from_now(u.release_at_ms)
                )?;
            }
            writeln!(
                out,
                "  node {} with device {} ({} GB)",
                s.node_peer_id,
                s.device.as_str(),
                s.memory_bytes / 1_000_000_000
            )?;
        }
        None => writeln!(out, "  no stake")?,
    }
    writeln!(out, "  {}", role(&v, &api)?)?;
    let p = &v.provider;
    writeln!(
        out,
        "  as provider: {} settled, {} refunded, {} open; {} slashes (tier {})",
        p.jobs.settled, p.jobs.refunded, p.jobs.open, p.slashes_total, p.reputation.tier
    )?;
    writeln!(
        out,
        "  as client: {} settled, {} refunded, {} open",
        v.client_jobs.settled, v.client_jobs.refunded, v.client_jobs.open
    )?;
    writeln!(out, "  as checker: {} verdicts posted", v.checks)?;
    print_recent_jobs(&v, out)?;
    writeln!(
        out,
        "  earned {} tokens for its work; slashes and penalties took {} tokens",
        v.earned, v.penalized
    )?;
    for s in &p.slashes {
        writeln!(
            out,
            "  slashed {} tokens at height {}: {}",
            s.amount, s.height.0, s.reason.reason
        )?;
    }
    if let Some(c) = &check {
        print_check(c, out)?;
    }
    Ok(())
}

/// What `attest provider status` found (schema `attest.provider-status/1`).
#[derive(Debug, Serialize)]
pub struct ProviderStatus {
    /// Always `attest.provider-status/1`.
    pub schema: &'static str,
    /// The provider's account.
    pub account: AccountId,
    /// The node asked, and its PeerId.
    pub node: String,
    /// Its PeerId.
    pub node_peer_id: String,
    /// The account as the ledger holds it.
    pub view: AccountSnapshot,
    /// The chain's `min_stake`, in units.
    pub min_stake: Amount,
    /// Whether the stake binds the node asked.
    pub bound_to_this_node: bool,
    /// Catalogue models the bound device holds.
    pub models_runnable: Vec<String>,
    /// Catalogue models it does not.
    pub models_not_runnable: Vec<String>,
    /// Its advert in the asked node's book, if there.
    pub advert: Option<AdvertView>,
    /// Which of the asked node's peers hold its advert, as they answered.
    pub reach: AdvertReach,
    /// Every condition that keeps work away, in the order to fix them; empty if none.
    pub problems: Vec<String>,
}

/// Checks every condition for `account` getting work, asking the node at `api`.
fn provider_status(api: &Api, account: AccountId) -> Result<ProviderStatus> {
    let status = api.status()?;
    let params = api.params()?.params;
    let view = api.account(&account)?;
    let advert = api
        .adverts()?
        .adverts
        .into_iter()
        .find(|a| a.provider == account);
    let reach: AdvertReach = api.get(&format!("/v1/adverts/{account}/reach"))?;
    let mut problems = Vec::new();
    let (mut runnable, mut not_runnable) = (Vec::new(), Vec::new());
    let mut bound = false;
    match &view.stake {
        None => problems.push(format!(
            "not staked: `attest stake --home HOME --amount N` with at least {} tokens",
            params.min_stake
        )),
        Some(stake) => {
            match stake.status.as_str() {
                "banned" => {
                    problems.push("banned: it lost its disputes; it gets no more work".to_owned())
                }
                "jailed" => {
                    problems.push("jailed: it gets no work until it is released".to_owned())
                }
                _ => {}
            }
            if stake.bonded < params.min_stake {
                problems.push(format!(
                    "{} tokens bonded, below the chain's min_stake of {}: stake more",
                    stake.bonded, params.min_stake
                ));
            }
            bound = stake.node_peer_id == status.peer_id;
            if !bound {
                problems.push(format!(
                    "the stake binds node {}, not the node asked ({}): restake from this node's home, or ask that node",
                    stake.node_peer_id, status.peer_id
                ));
            }
            let device = attest_protocol::tx::Capability {
                device: stake.device.clone(),
                memory_bytes: stake.memory_bytes,
            };
            for m in attest_protocol::workload::CATALOGUE {
                if device.can_run(m.id) {
                    runnable.push(m.id.to_owned());
                } else {
                    not_runnable.push(m.id.to_owned());
                }
            }
            if runnable.is_empty() {
                problems.push(format!(
                    "its device {} holds no catalogue model",
                    stake.device.as_str()
                ));
            }
        }
    }
    match &advert {
        None if bound => problems.push(
            "its node does not advertise: is `serve_jobs` on in its config.toml? (an eligible stake is needed too)"
                .to_owned(),
        ),
        None => problems.push("the node asked holds no advert of it".to_owned()),
        Some(a) if a.free_slots == 0 => {
            problems.push("its advert shows no free slot: it is busy".to_owned())
        }
        Some(_) => {}
    }
    if advert.is_some() && reach.asked > 0 && reach.holding.is_empty() {
        problems.push(format!(
            "none of the {} peers asked holds its advert: gossip does not reach them",
            reach.asked
        ));
    } else if reach.asked == 0 {
        problems.push("the node has no peers: check its bootnodes and listen addresses".to_owned());
    }
    Ok(ProviderStatus {
        schema: "attest.provider-status/1",
        account,
        node: api.url().to_owned(),
        node_peer_id: status.peer_id,
        view,
        min_stake: params.min_stake,
        bound_to_this_node: bound,
        models_runnable: runnable,
        models_not_runnable: not_runnable,
        advert,
        reach,
        problems,
    })
}

fn print_provider_status(r: &ProviderStatus, out: &mut impl Write) -> Result<()> {
    let yes = |b: bool| if b { "yes" } else { "NO" };
    let v = &r.view;
    writeln!(
        out,
        "provider {} (asked node {} at {})",
        r.account, r.node_peer_id, r.node
    )?;
    match &v.stake {
        Some(s) => {
            writeln!(
                out,
                "  staked:      {} ({} tokens bonded, min_stake {}; {})",
                yes(s.eligible),
                s.bonded,
                r.min_stake,
                s.status
            )?;
            writeln!(
                out,
                "  bound:       {} (the stake binds node {})",
                yes(r.bound_to_this_node),
                s.node_peer_id
            )?;
            writeln!(
                out,
                "  probation:   {} jobs left always checked; {} disputes lost",
                s.probation_left, s.disputes_lost
            )?;
            writeln!(
                out,
                "  device:      {} ({} GB): runs {}{}",
                s.device.as_str(),
                s.memory_bytes / 1_000_000_000,
                r.models_runnable.join(", "),
                if r.models_not_runnable.is_empty() {
                    String::new()
                } else {
                    format!("; cannot hold {}", r.models_not_runnable.join(", "))
                }
            )?;
        }
        None => writeln!(out, "  staked:      NO (no stake)")?,
    }
    match v.validator_power {
        Some(p) => writeln!(out, "  validator:   yes (power {p})")?,
        None => writeln!(
            out,
            "  validator:   no (the largest stakes validate; providing does not need it)"
        )?,
    }
    match &r.advert {
        Some(a) => writeln!(
            out,
            "  advert:      yes: {} free slots at {} units/token, expires in ~{} s",
            a.free_slots,
            a.price_per_token.0,
            a.expires_at_ms.saturating_sub(attest_node::shell::now_ms()) / 1000
        )?,
        None => writeln!(out, "  advert:      NO (not in the asked node's book)")?,
    }
    writeln!(
        out,
        "  reach:       held by {} of {} peers asked now{}{}",
        r.reach.holding.len(),
        r.reach.asked,
        if r.reach.not_holding.is_empty() {
            String::new()
        } else {
            format!("; missing at {}", r.reach.not_holding.join(", "))
        },
        if r.reach.no_answer.is_empty() {
            String::new()
        } else {
            format!("; no answer from {}", r.reach.no_answer.join(", "))
        }
    )?;
    let p = &v.provider;
    writeln!(
        out,
        "  work:        {} settled, {} refunded, {} open, {} committed; {} checks; {} slashes",
        p.jobs.settled, p.jobs.refunded, p.jobs.open, p.jobs.committed, v.checks, p.slashes_total
    )?;
    writeln!(
        out,
        "  earnings:    {} tokens earned, {} tokens taken by slashes and penalties",
        v.earned, v.penalized
    )?;
    print_recent_jobs(v, out)?;
    if r.problems.is_empty() {
        writeln!(
            out,
            "ready: eligible, advertised, and its advert reaches the network"
        )?;
    } else {
        writeln!(out, "why no work:")?;
        for problem in &r.problems {
            writeln!(out, "  - {problem}")?;
        }
    }
    Ok(())
}
