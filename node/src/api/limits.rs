//! Admission for the endpoints that cost the node work or hold a connection: the writes
//! (`POST /v1/txs`, `POST /v1/quote`) and the event stream (`GET /v1/events`).
//!
//! Two limits, both from the node's config:
//! - **per client address**, a token bucket: `rate_per_s` requests a second on average, up to
//!   `burst` at once. Past it the answer is 429 `rate_limited` with `Retry-After` (seconds) and
//!   the wait in the detail. The buckets are kept for at most [`MAX_ADDRESSES`] addresses, the
//!   least recently seen dropped first (a dropped address starts again with a full bucket).
//! - **writes in flight**, at most `max_in_flight` at once across all clients; past it the
//!   answer is 503 `busy` at once, never a queue. (The event stream has its own cap on
//!   subscribers.)
//!
//! A request whose address is unknown (the router driven without a socket, as in-process
//! tests do) counts as one client, the unspecified address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use attest_core::bounded::BoundedMap;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiError;

/// The most client addresses whose buckets are kept (about 100 bytes each).
pub const MAX_ADDRESSES: usize = 16_384;

/// The limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Requests a second one address may make on average.
    pub rate_per_s: u32,
    /// Requests one address may make at once, after a pause.
    pub burst: u32,
    /// Write requests in progress at once, across all clients.
    pub max_in_flight: u32,
}

impl Default for LimitsConfig {
    /// The config file's defaults.
    fn default() -> Self {
        Self {
            rate_per_s: 50,
            burst: 100,
            max_in_flight: 256,
        }
    }
}

/// One address's bucket, in thousandths of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    milli: u64,
    at_ms: u64,
}

impl Bucket {
    /// The most a bucket holds under `config`, in thousandths of a request.
    fn cap(config: &LimitsConfig) -> u64 {
        u64::from(config.burst.max(1)) * 1_000
    }

    /// A full bucket at `now_ms`.
    pub fn full(config: &LimitsConfig, now_ms: u64) -> Self {
        Self {
            milli: Self::cap(config),
            at_ms: now_ms,
        }
    }

    /// Takes one request at `now_ms`, refilling first; or the milliseconds until one is
    /// available.
    pub fn take(&mut self, config: &LimitsConfig, now_ms: u64) -> Result<(), u64> {
        let rate = u64::from(config.rate_per_s.max(1));
        let cap = Self::cap(config);
        let elapsed = now_ms.saturating_sub(self.at_ms);
        // `rate` requests a second is `rate` thousandths a millisecond.
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(rate))
            .min(cap);
        self.at_ms = self.at_ms.max(now_ms);
        if self.milli >= 1_000 {
            self.milli -= 1_000;
            Ok(())
        } else {
            Err((1_000 - self.milli).div_ceil(rate))
        }
    }
}

/// The API's admission state, shared by its tasks.
#[derive(Debug, Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LimitsConfig,
    start: Instant,
    buckets: Mutex<BoundedMap<IpAddr, Bucket>>,
    in_flight: Arc<Semaphore>,
}

impl Limits {
    /// Limits as `config` sets them.
    pub fn new(config: LimitsConfig) -> Self {
        let permits = usize::try_from(config.max_in_flight.max(1)).unwrap_or(usize::MAX);
        Self {
            inner: Arc::new(Inner {
                config,
                start: Instant::now(),
                buckets: Mutex::new(BoundedMap::new(MAX_ADDRESSES)),
                in_flight: Arc::new(Semaphore::new(permits)),
            }),
        }
    }

    /// Takes `request` from its client's bucket; `Some` answer if it is refused.
    fn refusal(&self, request: &Request) -> Option<Response> {
        self.take(client_ip(request))
            .err()
            .map(IntoResponse::into_response)
    }

    /// Takes one request of `ip` from its bucket.
    fn take(&self, ip: IpAddr) -> Result<(), ApiError> {
        let config = &self.inner.config;
        let now_ms = u64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        // A poisoned lock only means another request panicked mid-update of a bucket; the
        // map itself is still whole.
        let mut buckets = self
            .inner
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Taken out and put back, so that the least recently seen address goes first.
        let mut bucket = buckets
            .remove(&ip)
            .unwrap_or_else(|| Bucket::full(config, now_ms));
        let taken = bucket.take(config, now_ms);
        buckets.insert(ip, bucket);
        drop(buckets);
        taken.map_err(|wait_ms| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{ip} is over this node's limit of {}/s (bursts of {}) on writes and \
                     event streams; retry in {wait_ms} ms",
                    config.rate_per_s, config.burst
                ),
            )
            .retry_after(wait_ms)
        })
    }
}

/// The client's address, or the unspecified one when the server was not given sockets.
fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Middleware of the write endpoints: the client's bucket, then a slot among those in
/// flight, held until the answer is ready.
pub(super) async fn admit_write(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refused) = limits.refusal(&request) {
        return refused;
    }
    let Ok(_permit) = limits.inner.in_flight.clone().try_acquire_owned() else {
        let max = limits.inner.config.max_in_flight;
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("this node is handling its limit of {max} write requests at once; retry"),
        )
        .into_response();
    };
    next.run(request).await
}

/// Middleware of the event stream: the client's bucket only (a stream is long; the stream
/// caps its subscribers itself).
pub(super) async fn admit_stream(
    State(limits): State<Limits>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refused) = limits.refusal(&request) {
        return refused;
    }
    next.run(request).await
}

impl ApiError {
    /// Adds a `Retry-After` of `wait_ms`, rounded up to whole seconds.
    fn retry_after(mut self, wait_ms: u64) -> Self {
        self.retry_after_s = Some(wait_ms.div_ceil(1_000).max(1));
        self
    }
}

/// The `Retry-After` header of `seconds`.
pub(super) fn retry_after_header(seconds: u64) -> (header::HeaderName, HeaderValue) {
    (header::RETRY_AFTER, HeaderValue::from(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIGHT: LimitsConfig = LimitsConfig {
        rate_per_s: 10,
        burst: 3,
        max_in_flight: 1,
    };

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = Bucket::full(&TIGHT, 0);
        for _ in 0..3 {
            assert_eq!(b.take(&TIGHT, 0), Ok(()));
        }
        // Empty: one request refills in 100 ms at 10 a second.
        assert_eq!(b.take(&TIGHT, 0), Err(100));
        assert_eq!(b.take(&TIGHT, 40), Err(60));
        assert_eq!(b.take(&TIGHT, 100), Ok(()));
        // A long pause refills to the burst, not beyond.
        assert_eq!(b.take(&TIGHT, 1_000_000), Ok(()));
        assert_eq!(b.take(&TIGHT, 1_000_000), Ok(()));
        assert_eq!(b.take(&TIGHT, 1_000_000), Ok(()));
        assert!(b.take(&TIGHT, 1_000_000).is_err());
    }

    #[test]
    fn a_clock_read_out_of_order_or_at_the_end_of_time_does_not_overflow() {
        let mut b = Bucket::full(&TIGHT, 500);
        assert_eq!(b.take(&TIGHT, 0), Ok(()));
        assert_eq!(b.take(&TIGHT, u64::MAX), Ok(()));
        assert_eq!(b.take(&TIGHT, 0), Ok(()));
        let huge = LimitsConfig {
            rate_per_s: u32::MAX,
            burst: u32::MAX,
            max_in_flight: u32::MAX,
        };
        let mut b = Bucket::full(&huge, 0);
        assert_eq!(b.take(&huge, u64::MAX), Ok(()));
    }

    /// A write waits while `max_in_flight` others are in progress? No: it is refused at once
    /// with 503 `busy`, and admitted again once one of them answers.
    #[test]
    fn writes_past_the_cap_in_flight_are_refused_at_once() {
        use std::io::{Read, Write};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let release = Arc::new(tokio::sync::Notify::new());
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        let entered_tx = Arc::new(Mutex::new(entered_tx));
        let addr = runtime.block_on(async {
            let limits = Limits::new(LimitsConfig {
                rate_per_s: 1_000,
                burst: 1_000,
                max_in_flight: 1,
            });
            let wait = release.clone();
            let app = axum::Router::new()
                .route(
                    "/w",
                    axum::routing::post(move || async move {
                        let _ = entered_tx.lock().unwrap().send(());
                        wait.notified().await;
                        "done"
                    }),
                )
                .layer(axum::middleware::from_fn_with_state(limits, admit_write));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        });
        let send = move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(
                b"POST /w HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            )
            .unwrap();
            s
        };
        let read = |mut s: std::net::TcpStream| {
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        };
        let first = send();
        // The first holds the one slot until released; another is refused meanwhile.
        entered
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the first write reaches its handler");
        let refused = read(send());
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(
            refused.contains("\"busy\"") && refused.contains("limit of 1 write"),
            "{refused}"
        );
        release.notify_one();
        assert!(read(first).starts_with("HTTP/1.1 200"));
        let again = send();
        entered
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a write is admitted again");
        release.notify_one();
        assert!(read(again).starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn each_address_has_its_own_bucket_and_the_refusal_names_the_limit() {
        let limits = Limits::new(TIGHT);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.take(a).is_ok());
        }
        let refused = limits.take(a).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.error, "rate_limited");
        assert!(refused.detail.contains("10.0.0.1"), "{}", refused.detail);
        assert!(refused.detail.contains("limit of 10/s (bursts of 3)"));
        assert_eq!(refused.retry_after_s, Some(1));
        assert!(limits.take(b).is_ok(), "another address is not limited");
    }
}
