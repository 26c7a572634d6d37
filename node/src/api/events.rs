//! `GET /v1/events`: server-sent events, one `block` event per committed block and one event
//! per contract event of interest in it (jobs, verdicts, disputes, settlement, slashing).
//!
//! The node loop publishes each committed block's events once, on a bounded broadcast
//! channel ([`crate::shell::EVENT_BUFFER`] blocks); each subscriber turns them into SSE frames
//! in its own task. The loop never waits for a subscriber: one that falls behind the buffer
//! loses the oldest blocks and gets a `lagged` event saying how many.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;

use attest_contracts_sim::Event;
use attest_protocol::{BlockHash, Height};

use super::accounts::ReasonView;
use super::{ApiError, ask};
use crate::shell::NodeHandle;

/// Subscribers the stream serves at once. Each holds a connection and a cursor into the
/// shared buffer (not a copy of it), so the bound is about connections and serialisation
/// work, not memory; 64 is far more than the dashboards and CLIs of a testnet need.
pub const MAX_SUBSCRIBERS: usize = 64;

/// How often an idle stream sends a comment, so proxies and clients keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A committed block and the contract events of interest in it, as the loop publishes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvents {
    /// The block's height.
    pub height: Height,
    /// The block's hash.
    pub hash: BlockHash,
    /// Transactions it carried.
    pub txs: usize,
    /// Its block time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Its contract events that [`event_name`] names, in order.
    pub events: Vec<Event>,
}

impl BlockEvents {
    /// The block's facts and, of `events`, only those the stream carries.
    pub fn new(
        height: Height,
        hash: BlockHash,
        txs: usize,
        time_ms: u64,
        mut events: Vec<Event>,
    ) -> Self {
        events.retain(|e| event_name(e).is_some());
        Self {
            height,
            hash,
            txs,
            time_ms,
            events,
        }
    }
}

/// The SSE event name of a contract event the stream carries, `None` for the rest (fees,
/// transfers and stake movements, which the blocks and accounts show).
pub fn event_name(event: &Event) -> Option<&'static str> {
    Some(match event {
        Event::JobOpened { .. } => "job_opened",
        Event::ResultCommitted { .. } => "result_committed",
        Event::CheckAssigned { .. } => "check_assigned",
        Event::NoCheckerAvailable { .. } => "no_checker_available",
        Event::VerdictPosted { .. } => "verdict_posted",
        Event::VerdictMissed { .. } => "verdict_missed",
        Event::CommitMissed { .. } => "commit_missed",
        Event::DisputeOpened { .. } => "dispute_opened",
        Event::DisputeRound { .. } => "dispute_round",
        Event::DisputeResolved { .. } => "dispute_resolved",
        Event::Settled { .. } => "settled",
        Event::Refunded { .. } => "refunded",
        Event::Slashed { .. } => "slashed",
        Event::ProbationStarted { .. } => "probation_started",
        Event::Jailed { .. } => "jailed",
        Event::FeePaid { .. }
        | Event::Transfer { .. }
        | Event::Staked { .. }
        | Event::Unbonding { .. }
        | Event::Released { .. } => return None,
    })
}

/// A contract event as JSON: its fields as the contract names them, with the block's height
/// and time added, and a slash's reason flattened as `/v1/accounts` shows it.
fn event_json(block: &BlockEvents, event: &Event) -> Value {
    // Every variant serialises as `{"Variant": {fields}}`; the fields are what we send.
    let mut fields = match serde_json::to_value(event) {
        Ok(Value::Object(outer)) => match outer.into_iter().next() {
            Some((_, Value::Object(inner))) => inner,
            _ => Map::new(),
        },
        _ => Map::new(),
    };
    if let Event::Slashed { reason, .. } = event {
        let reason = ReasonView::new(reason);
        if let Ok(Value::Object(r)) = serde_json::to_value(reason) {
            fields.remove("reason");
            fields.extend(r);
        }
    }
    fields.insert("height".into(), json!(block.height));
    fields.insert("time_ms".into(), json!(block.time_ms));
    Value::Object(fields)
}

/// The SSE frames of one published block: `block`, then its contract events.
fn frames(block: &BlockEvents) -> impl Iterator<Item = SseEvent> + '_ {
    let id = block.height.0.to_string();
    let head = SseEvent::default().event("block").id(id.clone()).data(
        json!({
            "height": block.height,
            "hash": block.hash,
            "txs": block.txs,
            "time_ms": block.time_ms,
        })
        .to_string(),
    );
    let events = block.events.iter().filter_map(move |e| {
        let name = event_name(e)?;
        Some(
            SseEvent::default()
                .event(name)
                .id(id.clone())
                .data(event_json(block, e).to_string()),
        )
    });
    std::iter::once(head).chain(events)
}

/// `GET /v1/events`.
pub(super) async fn events(
    State(node): State<NodeHandle>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Some(receiver) = ask(node.subscribe()).await? else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            format!("the event stream serves at most {MAX_SUBSCRIBERS} subscribers at once"),
        ));
    };
    let queue: VecDeque<SseEvent> = VecDeque::new();
    let stream = futures::stream::unfold((receiver, queue), |(mut receiver, mut queue)| async {
        loop {
            if let Some(frame) = queue.pop_front() {
                return Some((Ok(frame), (receiver, queue)));
            }
            match receiver.recv().await {
                Ok(block) => queue.extend(frames(&block)),
                Err(RecvError::Lagged(missed)) => queue.push_back(
                    SseEvent::default()
                        .event("lagged")
                        .data(json!({ "missed_blocks": missed }).to_string()),
                ),
                // The node stopped: end the stream, so the connection closes.
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
