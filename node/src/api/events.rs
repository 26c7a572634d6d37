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

use super::{ApiError, ask};
use crate::shell::NodeHandle;
pub use crate::views::{BlockEvents, MAX_SUBSCRIBERS, ReasonView, event_name};

/// How often an idle stream sends a comment, so proxies and clients keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
