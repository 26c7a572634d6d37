//! `GET /v1/events`: server-sent events, one `block` event per committed block and one event
//! per contract event of interest in it (jobs, verdicts, disputes, settlement, slashing).
//! Each contract event's data names its kind (`"event"`), so a reader of `data:` lines alone
//! knows what it got.
//!
//! Filters, both optional: `?job=ID` sends only that job's events (and no `block` frames), so
//! a client follows its job without polling; `?kinds=result_committed,refunded` sends only
//! the named kinds (`block` is a kind too). A bad filter is a 400 that names it.
//!
//! The node loop publishes each committed block's events once, on a bounded broadcast
//! channel ([`crate::shell::EVENT_BUFFER`] blocks); each subscriber turns them into SSE frames
//! in its own task. The loop never waits for a subscriber: one that falls behind the buffer
//! loses the oldest blocks and gets a `lagged` event saying how many.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use attest_protocol::JobId;

use super::{ApiError, ask, parse_hex_id};
use crate::shell::NodeHandle;
pub use crate::views::{BlockEvents, MAX_SUBSCRIBERS, event_json, event_name};

/// How often an idle stream sends a comment, so proxies and clients keep the connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The kinds a stream may be filtered to: `block` and every named contract event.
const KINDS: [&str; 18] = [
    "block",
    "job_opened",
    "result_committed",
    "check_assigned",
    "no_checker_available",
    "verdict_posted",
    "verdict_missed",
    "commit_missed",
    "dispute_opened",
    "dispute_round",
    "dispute_resolved",
    "settled",
    "refunded",
    "slashed",
    "probation_started",
    "jailed",
    "bond_returned",
    "bond_forfeited",
];

/// Which frames a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this job's events (no `block` frames).
    job: Option<JobId>,
    /// Only these kinds; `None` is every kind.
    kinds: Option<Vec<&'static str>>,
}

impl Filter {
    /// Parses `job=ID&kinds=a,b`; anything else is a 400 naming it.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut filter = Self::default();
        let bad = |detail: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", detail);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("job", id)) => filter.job = Some(parse_hex_id("job id", id)?),
                Some(("kinds", list)) => {
                    let mut kinds = Vec::new();
                    for k in list.split(',').filter(|k| !k.is_empty()) {
                        let Some(known) = KINDS.iter().find(|known| **known == k) else {
                            return Err(bad(format!(
                                "kinds: unknown event kind {k:?}; the kinds are {}",
                                KINDS.join(", ")
                            )));
                        };
                        kinds.push(*known);
                    }
                    filter.kinds = Some(kinds);
                }
                _ => {
                    return Err(bad(format!(
                        "query `{pair}`: the filters are job=ID and kinds=a,b,c"
                    )));
                }
            }
        }
        Ok(filter)
    }

    fn wants_kind(&self, kind: &str) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }

    /// Whether an event of `kind` whose JSON ([`event_json`]) is `data` passes.
    fn wants(&self, kind: &str, data: &Value) -> bool {
        self.wants_kind(kind) && self.job.is_none_or(|job| event_job(data) == Some(job))
    }
}

/// The job an event is about, from its JSON: its own `job` field, or its slash reason's.
fn event_job(data: &Value) -> Option<JobId> {
    serde_json::from_value(data.get("job")?.clone()).ok()
}

/// The SSE frames of one published block that `filter` wants: `block`, then its contract
/// events.
fn frames<'a>(block: &'a BlockEvents, filter: &'a Filter) -> impl Iterator<Item = SseEvent> + 'a {
    let id = block.height.0.to_string();
    let head = (filter.job.is_none() && filter.wants_kind("block")).then(|| {
        SseEvent::default().event("block").id(id.clone()).data(
            json!({
                "height": block.height,
                "hash": block.hash,
                "txs": block.txs,
                "time_ms": block.time_ms,
            })
            .to_string(),
        )
    });
    let events = block.events.iter().filter_map(move |e| {
        let name = event_name(e)?;
        if !filter.wants_kind(name) {
            return None;
        }
        let data = event_json(block.height, block.time_ms, e);
        filter.wants(name, &data).then(|| {
            SseEvent::default()
                .event(name)
                .id(id.clone())
                .data(data.to_string())
        })
    });
    head.into_iter().chain(events)
}

/// `GET /v1/events[?job=ID][&kinds=a,b]`.
pub(super) async fn events(
    State(node): State<NodeHandle>,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let filter = Filter::parse(query.as_deref())?;
    let Some(receiver) = ask(node.subscribe()).await? else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscribers",
            format!("the event stream serves at most {MAX_SUBSCRIBERS} subscribers at once"),
        ));
    };
    let queue: VecDeque<SseEvent> = VecDeque::new();
    let state = (receiver, queue, filter);
    let stream = futures::stream::unfold(state, |(mut receiver, mut queue, filter)| async {
        loop {
            if let Some(frame) = queue.pop_front() {
                return Some((Ok(frame), (receiver, queue, filter)));
            }
            match receiver.recv().await {
                Ok(block) => queue.extend(frames(&block, &filter)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use attest_contracts_sim::{Event, RefundReason};
    use attest_protocol::{AccountId, Amount, SecretKey};

    #[test]
    fn every_named_event_is_a_kind_and_filters_parse() {
        let who: AccountId = SecretKey::from_seed([3; 32]).public();
        let job = JobId([9; 32]);
        let events = [
            Event::Refunded {
                job,
                client: who,
                amount: Amount(1),
                reason: RefundReason::MissedCommit,
            },
            Event::Settled {
                job,
                provider: who,
                provider_paid: Amount(1),
                protocol_fee: Amount(0),
                checker_paid: None,
                client: who,
                client_refund: Amount(0),
            },
        ];
        let block = BlockEvents::new(
            attest_protocol::Height(5),
            attest_protocol::BlockHash([0; 32]),
            2,
            1_000,
            events.to_vec(),
        );
        let json: Vec<Value> = events
            .iter()
            .map(|e| event_json(block.height, block.time_ms, e))
            .collect();
        for (e, data) in events.iter().zip(&json) {
            let name = event_name(e).expect("named");
            assert!(KINDS.contains(&name), "{name}");
            assert_eq!(event_job(data), Some(job));
            assert_eq!(data["event"], name);
        }
        assert_eq!(Filter::parse(None).ok(), Some(Filter::default()));
        let f = Filter::parse(Some(&format!("job={job}&kinds=settled,block"))).expect("valid");
        assert!(f.wants("settled", &json[1]) && !f.wants("refunded", &json[0]));
        let other = Filter::parse(Some(&format!("job={}", JobId([8; 32])))).expect("valid");
        assert!(!other.wants("settled", &json[1]));
        // A filter on a job has no block frames; the unfiltered stream has them.
        assert_eq!(frames(&block, &f).count(), 1);
        assert_eq!(frames(&block, &Filter::default()).count(), 3);
        for bad in ["kinds=nope", "job=12", "since=4", "job"] {
            assert!(Filter::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
