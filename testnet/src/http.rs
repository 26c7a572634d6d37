//! The HTTP client of the node's JSON API, on [`ureq`]: HTTP/1.1 with fixed-length and chunked
//! bodies, `https://` through rustls (the webpki roots), and a pool of kept-alive connections.
//!
//! One [`Client`] talks to one API: it has connect and read timeouts, caps every body it reads
//! at [`MAX_BODY_BYTES`], and decodes answers into the API's typed views. Every failure is an
//! [`Error`] that names the request (method and URL) and the problem; an error answer names its
//! status and the API's [`ErrorBody`] code and message. The node's event stream
//! (`GET /v1/events`) is read as it arrives through [`Client::events`], which iterates the
//! stream's `data:` lines ([`sse_data`] does the same for any reader). The client commands,
//! the launcher, the demo, the load generator, the process tests and the benchmark all use
//! this one module.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::{Agent, BodyReader};

use attest_node::api::ErrorBody;

/// The largest body read: a page of blocks is at most a few MiB of JSON, so a larger answer is
/// not from the node's API, and reading it would only waste memory.
pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// How long a connection attempt (and a TLS handshake) may take before the node counts as not
/// answering.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to wait for an answer, and for each read of it: the API itself gives up on the
/// node after 10 s.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the event stream may stay silent before it counts as broken: the node sends a
/// keep-alive comment every 15 s.
pub const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(45);

/// The longest event-stream line read: an event's JSON is well under a kilobyte.
pub const MAX_EVENT_LINE_BYTES: usize = 1024 * 1024;

/// How much of a body that is not the expected JSON an error quotes.
const EXCERPT_BYTES: usize = 200;

/// A client of one HTTP API, e.g. `http://127.0.0.1:26601`. Cloning it is cheap and the clones
/// share its connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    agent: Agent,
    base: String,
    max_body: u64,
}

impl Client {
    /// A client of the API at `url`: `http://` or `https://`, a host, an optional port and an
    /// optional path prefix (a trailing `/` is ignored). Nothing is opened until the first
    /// request.
    pub fn new(url: &str) -> Result<Self, Error> {
        let base = url.trim_end_matches('/');
        let bad = |why: &str| Error {
            method: "",
            url: url.to_owned(),
            kind: ErrorKind::BadUrl(why.to_owned()),
        };
        let uri: ureq::http::Uri = base.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(bad("it must start with http:// or https://")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("it names no host"));
        }
        if uri.query().is_some() {
            return Err(bad("it must not have a query"));
        }
        Ok(Self {
            agent: agent(CONNECT_TIMEOUT, READ_TIMEOUT),
            base: base.to_owned(),
            max_body: MAX_BODY_BYTES,
        })
    }

    /// A client of the plain-HTTP API at `addr` (a node on loopback).
    pub fn local(addr: SocketAddr) -> Self {
        Self {
            agent: agent(CONNECT_TIMEOUT, READ_TIMEOUT),
            base: format!("http://{addr}"),
            max_body: MAX_BODY_BYTES,
        }
    }

    /// The same API with other timeouts (and a pool of its own): a short one for probing a node
    /// that may be down or still starting.
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.agent = agent(connect, read);
        self
    }

    /// The same API with another cap on the bodies read.
    pub fn with_max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// The API's base URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET path`, its JSON answer decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.exchange("GET", path, None)
    }

    /// `POST path` with `body` as JSON, its JSON answer decoded as `T`.
    pub fn post<B, T>(&self, path: &str, body: &B) -> Result<T, Error>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let url = self.url_of(path);
        let body = serde_json::to_vec(body).map_err(|e| Error {
            method: "POST",
            url,
            kind: ErrorKind::Encode(e),
        })?;
        self.exchange("POST", path, Some(&body))
    }

    /// `GET path` as a server-sent event stream (`/v1/events`): its `data:` lines as they
    /// arrive, for as long as the server keeps the stream open. The body has no size cap (each
    /// line has, [`MAX_EVENT_LINE_BYTES`]); each read may wait [`STREAM_READ_TIMEOUT`].
    pub fn events(&self, path: &str) -> Result<SseData<BufReader<BodyReader<'static>>>, Error> {
        let url = self.url_of(path);
        let fail = |kind| Error {
            method: "GET",
            url: url.clone(),
            kind,
        };
        let mut response = self
            .agent
            .get(&url)
            .header("accept", "text/event-stream")
            .config()
            .timeout_per_read(Some(STREAM_READ_TIMEOUT))
            .build()
            .call()
            .map_err(|e| fail(ErrorKind::from_ureq(e)))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let bytes = read_capped(response.body_mut(), self.max_body)
                .map_err(|e| fail(ErrorKind::from_ureq(e)))?;
            return Err(fail(ErrorKind::status(status, &bytes)));
        }
        Ok(sse_data(&url, response.into_body().into_reader()))
    }

    fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request and its answer. A connection from the pool that the server had closed
    /// (reset, or closed before the answer) is given up and the request sent once more on a
    /// new one; a repeated `POST /v1/txs` is harmless (the node answers 409 `duplicate`).
    fn exchange<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<T, Error> {
        let url = self.url_of(path);
        let mut answer = self.once(&url, body);
        if matches!(&answer, Err(e) if is_dropped_connection(e)) {
            answer = self.once(&url, body);
        }
        let fail = |kind| Error {
            method,
            url: url.clone(),
            kind,
        };
        let (status, bytes) = answer.map_err(|e| fail(ErrorKind::from_ureq(e)))?;
        if !(200..300).contains(&status) {
            return Err(fail(ErrorKind::status(status, &bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|error| {
            fail(ErrorKind::BadBody {
                status,
                error,
                excerpt: excerpt(&bytes),
            })
        })
    }

    /// Sends the request and reads the whole body, up to the cap.
    fn once(&self, url: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), ureq::Error> {
        let mut response = match body {
            Some(body) => self
                .agent
                .post(url)
                .header("accept", "application/json")
                .content_type("application/json")
                .send(body)?,
            None => self
                .agent
                .get(url)
                .header("accept", "application/json")
                .call()?,
        };
        let status = response.status().as_u16();
        let bytes = read_capped(response.body_mut(), self.max_body)?;
        Ok((status, bytes))
    }
}

/// An agent with the given timeouts that hands every status to the caller (error answers carry
/// the API's `ErrorBody`), ignores proxy settings in the environment (the API is usually on
/// loopback) and names itself `attest/VERSION`.
fn agent(connect: Duration, read: Duration) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(connect))
        .timeout_recv_response(Some(read))
        .timeout_per_read(Some(read))
        .timeout_per_write(Some(read))
        .proxy(None)
        .user_agent(concat!("attest/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// The whole body, refused early if its `Content-Length` is over `cap` and cut off with an
/// error as soon as it is.
fn read_capped(body: &mut ureq::Body, cap: u64) -> Result<Vec<u8>, ureq::Error> {
    if body.content_length().is_some_and(|n| n > cap) {
        return Err(ureq::Error::BodyExceedsLimit(cap));
    }
    body.with_config().limit(cap).read_to_vec()
}

/// Whether `e` says the server dropped the connection before answering: what a kept
/// connection the server has meanwhile closed looks like.
fn is_dropped_connection(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Io(io) if matches!(
        io.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    ))
}

/// The start of `bytes` as text, for an error message.
fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)]).into_owned()
}

/// A failed request: which one, and what went wrong.
#[derive(Debug)]
pub struct Error {
    method: &'static str,
    url: String,
    kind: ErrorKind,
}

/// What went wrong with a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server answered with a status outside 2xx.
    Status {
        /// The status code.
        status: u16,
        /// The API's error body, if the answer was one.
        body: Option<ErrorBody>,
        /// The start of the body otherwise.
        excerpt: String,
    },
    /// There was no (complete) answer: the connection or TLS handshake failed, a timeout
    /// passed, the connection broke, or the answer was not HTTP.
    Transport(ureq::Error),
    /// The body was longer than the cap.
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// A 2xx answer whose body is not the JSON the API documents.
    BadBody {
        /// The status code.
        status: u16,
        /// Why it could not be decoded.
        error: serde_json::Error,
        /// The start of the body.
        excerpt: String,
    },
    /// The request body could not be encoded as JSON.
    Encode(serde_json::Error),
    /// The event stream broke, or sent something that is not an event stream.
    Stream(io::Error),
    /// The URL is not one this client can use.
    BadUrl(String),
}

impl ErrorKind {
    fn from_ureq(e: ureq::Error) -> Self {
        match e {
            ureq::Error::BodyExceedsLimit(limit) => Self::TooLarge { limit },
            e => Self::Transport(e),
        }
    }

    fn status(status: u16, bytes: &[u8]) -> Self {
        Self::Status {
            status,
            body: serde_json::from_slice(bytes).ok(),
            excerpt: excerpt(bytes),
        }
    }
}

impl Error {
    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The request's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error code (`not_found`, `stale_nonce`, ...) of an error answer.
    pub fn code(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Status {
                body: Some(body), ..
            } => Some(&body.error),
            _ => None,
        }
    }

    /// Whether the server was not reached or did not answer (as opposed to answering with an
    /// error, with something that is not HTTP, or with a body that is not the API's).
    pub fn is_unreachable(&self) -> bool {
        matches!(&self.kind, ErrorKind::Transport(e) if !matches!(e, ureq::Error::Protocol(_)))
    }

    /// The request error in `e`'s chain of causes, if there is one.
    pub fn find(e: &anyhow::Error) -> Option<&Error> {
        e.chain().find_map(|cause| cause.downcast_ref::<Error>())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let ErrorKind::BadUrl(why) = &self.kind {
            return write!(f, "node URL {:?}: {why}", self.url);
        }
        write!(f, "{} {}: ", self.method, self.url)?;
        match &self.kind {
            ErrorKind::Status {
                status,
                body: Some(body),
                ..
            } => write!(f, "{status} {}: {}", body.error, body.detail),
            ErrorKind::Status {
                status, excerpt, ..
            } => {
                let reason = ureq::http::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error");
                write!(f, "{status} {reason}: {excerpt:?}")
            }
            ErrorKind::Transport(e @ ureq::Error::Protocol(_)) => {
                write!(f, "a malformed answer: {e}")
            }
            ErrorKind::Transport(e) => write!(f, "no answer: {e}"),
            ErrorKind::TooLarge { limit } => {
                write!(f, "the body is over the {limit}-byte limit")
            }
            ErrorKind::BadBody {
                status,
                error,
                excerpt,
            } => write!(
                f,
                "status {status}: the body is not the expected JSON ({error}): {excerpt:?}"
            ),
            ErrorKind::Encode(e) => write!(f, "encoding the request body: {e}"),
            ErrorKind::Stream(e) => write!(f, "event stream: {e}"),
            ErrorKind::BadUrl(_) => Ok(()),
        }
    }
}

impl std::error::Error for Error {}

/// One `data:` line of a server-sent event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseLine {
    /// The name of the event the line belongs to (its `event:` field), `message` if it has
    /// none.
    pub event: String,
    /// The line's value: what follows `data:` and one optional space.
    pub data: String,
}

/// The `data:` lines of a server-sent event stream ([`sse_data`]).
#[derive(Debug)]
pub struct SseData<R> {
    url: String,
    reader: R,
    event: Option<String>,
    line: Vec<u8>,
    done: bool,
}

/// The `data:` lines of the server-sent event stream `body` (from `url`, which errors name),
/// each as soon as it has arrived, with the name of its event. Comments (keep-alives), `id:`
/// and `retry:` lines are skipped; lines end in LF or CRLF. The iterator ends when the stream
/// does (a line cut off by the end is dropped, as the SSE rules say) and after the first error:
/// a broken connection, a read timeout, a line over [`MAX_EVENT_LINE_BYTES`] or one that is not
/// UTF-8.
pub fn sse_data<R: Read>(url: &str, body: R) -> SseData<BufReader<R>> {
    SseData {
        url: url.to_owned(),
        reader: BufReader::new(body),
        event: None,
        line: Vec::new(),
        done: false,
    }
}

impl<R: BufRead> SseData<R> {
    fn fail(&mut self, e: io::Error) -> Option<Result<SseLine, Error>> {
        self.done = true;
        Some(Err(Error {
            method: "GET",
            url: self.url.clone(),
            kind: ErrorKind::Stream(e),
        }))
    }
}

impl<R: BufRead> Iterator for SseData<R> {
    type Item = Result<SseLine, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.line.clear();
            let limit = MAX_EVENT_LINE_BYTES as u64 + 1;
            match (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.line)
            {
                Ok(0) => self.done = true,
                Ok(_) => {}
                Err(e) => return self.fail(e),
            }
            if self.done {
                break;
            }
            if self.line.pop() != Some(b'\n') {
                if self.line.len() >= MAX_EVENT_LINE_BYTES {
                    let why = format!("a line is over {MAX_EVENT_LINE_BYTES} bytes");
                    return self.fail(io::Error::new(io::ErrorKind::InvalidData, why));
                }
                // The stream ended inside a line.
                self.done = true;
                break;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let Ok(text) = std::str::from_utf8(&self.line) else {
                let why = "a line is not UTF-8";
                return self.fail(io::Error::new(io::ErrorKind::InvalidData, why));
            };
            if text.is_empty() {
                // The end of an event.
                self.event = None;
                continue;
            }
            let (field, value) = match text.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (text, ""),
            };
            match field {
                "event" => self.event = Some(value.to_owned()),
                "data" => {
                    let event = self.event.clone().unwrap_or_else(|| "message".to_owned());
                    let data = value.to_owned();
                    return Some(Ok(SseLine { event, data }));
                }
                // A comment (an empty field name), `id`, `retry` or a field SSE ignores.
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    use serde_json::Value;

    /// A server on 127.0.0.1 that answers each of the first `connections` connections with
    /// `answer` after reading its request head (and the body its `Content-Length` gives), then
    /// closes it. Answers its address.
    fn serve(answer: Vec<u8>, connections: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                let Ok(stream) = stream else { return };
                answer_one(stream, &answer);
            }
        });
        addr
    }

    fn answer_one(stream: TcpStream, answer: &[u8]) {
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(n) = lower.strip_prefix("content-length:") {
                length = n.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let _ = reader.get_mut().write_all(answer);
    }

    /// `body` in chunks of at most `size` bytes, with the last chunk and no trailers.
    fn chunked(body: &str, size: usize) -> String {
        let mut out = String::new();
        for chunk in body.as_bytes().chunks(size) {
            out.push_str(&format!("{:x}\r\n", chunk.len()));
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push_str("\r\n");
        }
        out + "0\r\n\r\n"
    }

    fn head(status: &str, headers: &str) -> String {
        format!("HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n")
    }

    #[test]
    fn a_chunked_body_is_read_whole() {
        let body = r#"{"blocks":[],"next":null,"latest":7,"padding":"abcdefghijklmnopqrstuvwxyz"}"#;
        let answer = head("200 OK", "Transfer-Encoding: chunked\r\n") + &chunked(body, 7);
        let client = Client::local(serve(answer.into_bytes(), 1));
        let page: attest_node::api::BlocksPage = client.get("/v1/blocks?from=1").unwrap();
        assert_eq!(page.latest.0, 7);
        assert!(page.blocks.is_empty() && page.next.is_none());
    }

    #[test]
    fn keep_alive_answers_share_a_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // One connection only: the second request must reuse it.
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            for answer in [
                "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
                "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{\"ok\":false}",
            ] {
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                }
                reader.get_mut().write_all(answer.as_bytes()).unwrap();
            }
        });
        let client = Client::local(addr);
        let first: Value = client.get("/health").unwrap();
        let second: Value = client.get("/health").unwrap();
        assert_eq!(
            (first["ok"].as_bool(), second["ok"].as_bool()),
            (Some(true), Some(false))
        );
    }

    #[test]
    fn an_error_answer_names_the_url_status_code_and_message() {
        let body = r#"{"error":"stale_nonce","detail":"nonce 3 is below the account's 5"}"#;
        let answer = head(
            "409 Conflict",
            &format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ),
        ) + body;
        let addr = serve(answer.into_bytes(), 1);
        let client = Client::local(addr);
        let err = client
            .post::<_, Value>("/v1/txs", &serde_json::json!({ "tx": "00" }))
            .unwrap_err();
        assert_eq!((err.status(), err.code()), (Some(409), Some("stale_nonce")));
        assert_eq!(
            err.to_string(),
            format!("POST http://{addr}/v1/txs: 409 stale_nonce: nonce 3 is below the account's 5")
        );
        // Found again through anyhow's context.
        let wrapped = anyhow::Error::new(err).context("submitting");
        assert_eq!(
            Error::find(&wrapped).and_then(Error::code),
            Some("stale_nonce")
        );
    }

    #[test]
    fn an_error_answer_that_is_not_the_apis_is_quoted() {
        let answer = head("502 Bad Gateway", "Content-Length: 11\r\n") + "proxy error";
        let addr = serve(answer.into_bytes(), 1);
        let err = Client::local(addr).get::<Value>("/v1/status").unwrap_err();
        assert_eq!((err.status(), err.code()), (Some(502), None));
        let text = err.to_string();
        assert!(
            text.contains(&format!("GET http://{addr}/v1/status: 502 Bad Gateway")),
            "{text}"
        );
        assert!(text.contains("proxy error"), "{text}");
    }

    #[test]
    fn a_body_over_the_cap_is_refused() {
        // Announced too long: refused before it is read.
        let answer = head("200 OK", "Content-Length: 1000\r\n") + &"x".repeat(1000);
        let client = Client::local(serve(answer.into_bytes(), 1)).with_max_body(100);
        let err = client.get::<Value>("/v1/blocks").unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::TooLarge { limit: 100 }),
            "{err:?}"
        );
        assert!(err.to_string().contains("over the 100-byte limit"), "{err}");
        // Chunked, so its length is only known by reading it: cut off at the cap.
        let body = format!("[{}1]", "1,".repeat(100));
        let answer = head("200 OK", "Transfer-Encoding: chunked\r\n") + &chunked(&body, 16);
        let client = Client::local(serve(answer.into_bytes(), 1)).with_max_body(100);
        let err = client.get::<Value>("/v1/blocks").unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::TooLarge { limit: 100 }),
            "{err:?}"
        );
        // At the cap exactly: read.
        let answer = head("200 OK", "Transfer-Encoding: chunked\r\n") + &chunked(&body, 16);
        let client = Client::local(serve(answer.into_bytes(), 1)).with_max_body(body.len() as u64);
        assert_eq!(client.get::<Vec<u64>>("/").unwrap().len(), 101);
    }

    #[test]
    fn bad_answers_are_errors_naming_the_request_not_panics() {
        for answer in [
            "garbage\r\n\r\n".to_owned(),
            head("200 OK", "Content-Length: x\r\n"),
            head("200 OK", "Transfer-Encoding: chunked\r\n") + "zz\r\nabc\r\n",
            head("200 OK", "Content-Length: 3\r\n") + "abc",
            head("200 OK", "Content-Length: 99\r\n") + "{}",
            head("200 OK", "Content-Length: 2\r\n") + "{}",
        ] {
            // Each may be asked twice (a dropped connection is retried once).
            let addr = serve(answer.clone().into_bytes(), 2);
            let err = Client::local(addr)
                .get::<attest_node::views::Status>("/v1/status")
                .unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("GET http://{addr}/v1/status: ")),
                "{answer:?}: {text}"
            );
        }
    }

    #[test]
    fn a_closed_port_is_an_unreachable_error_naming_the_url() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let short = Duration::from_millis(500);
        let err = Client::local(addr)
            .with_timeouts(short, short)
            .get::<Value>("/v1/status")
            .unwrap_err();
        assert!(err.is_unreachable(), "{err:?}");
        assert!(
            err.to_string()
                .contains(&format!("http://{addr}/v1/status")),
            "{err}"
        );
    }

    #[test]
    fn https_urls_speak_tls() {
        // A plain-HTTP server on the other end, answering before it is asked: the client's
        // TLS handshake fails, in rustls's words.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(2) {
                let Ok(mut stream) = stream else { return };
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
                let _ = stream.read(&mut [0; 1024]);
            }
        });
        let url = format!("https://{addr}");
        let err = Client::new(&url)
            .unwrap()
            .get::<Value>("/v1/status")
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Transport(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("GET {url}/v1/status: ")),
            "{text}"
        );
        assert!(text.contains("corrupt message"), "{text}");
    }

    #[test]
    fn node_urls_are_checked() {
        assert_eq!(
            Client::new("http://127.0.0.1:26601/").unwrap().url(),
            "http://127.0.0.1:26601"
        );
        assert!(Client::new("https://node.example.org/attest").is_ok());
        for bad in [
            "127.0.0.1:26601",
            "ftp://h:1",
            "http://",
            "http://h:1/?x=1",
            "not a url",
        ] {
            let err = Client::new(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn event_stream_data_lines_are_read_as_they_arrive() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (next, go) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            let out = reader.get_mut();
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                        Transfer-Encoding: chunked\r\n\r\n";
            out.write_all(head.as_bytes()).unwrap();
            let send = |out: &mut TcpStream, text: &str| {
                write!(out, "{:x}\r\n{text}\r\n", text.len()).unwrap();
                out.flush().unwrap();
            };
            send(
                out,
                ": keep-alive\n\nevent: block\nid: 1\ndata: {\"height\":1}\n\n",
            );
            // The first event must reach the client before the rest is sent.
            go.recv().unwrap();
            // One event split over two chunks, CRLF line ends, two data lines, no name.
            send(out, "data:first\r\nda");
            send(
                out,
                "ta: second\r\n\r\nevent: lagged\ndata: {\"missed_blocks\":3}\n\n",
            );
            // A line cut off by the end of the stream is dropped.
            send(out, "data: cut off");
            out.write_all(b"0\r\n\r\n").unwrap();
        });
        let mut events = Client::local(addr).events("/v1/events").unwrap();
        let line = |event: &str, data: &str| SseLine {
            event: event.to_owned(),
            data: data.to_owned(),
        };
        assert_eq!(
            events.next().unwrap().unwrap(),
            line("block", "{\"height\":1}")
        );
        next.send(()).unwrap();
        let rest: Vec<SseLine> = events.map(Result::unwrap).collect();
        assert_eq!(
            rest,
            vec![
                line("message", "first"),
                line("message", "second"),
                line("lagged", "{\"missed_blocks\":3}"),
            ]
        );
    }

    #[test]
    fn event_stream_errors_end_the_iteration() {
        let too_long = format!("data: {}\n", "x".repeat(MAX_EVENT_LINE_BYTES));
        let mut lines = sse_data("http://h/v1/events", too_long.as_bytes());
        let err = lines.next().unwrap().unwrap_err();
        assert!(
            err.to_string()
                .contains("GET http://h/v1/events: event stream"),
            "{err}"
        );
        assert!(lines.next().is_none());
        let mut lines = sse_data("http://h/v1/events", &b"data: \xff\n"[..]);
        assert!(lines.next().unwrap().is_err());
        assert!(lines.next().is_none());
        // An error answer instead of a stream names its status and code.
        let body = r#"{"error":"too_many_subscribers","detail":"at most 64"}"#;
        let answer = head(
            "503 Service Unavailable",
            &format!("Content-Length: {}\r\n", body.len()),
        ) + body;
        let addr = serve(answer.into_bytes(), 1);
        let Err(err) = Client::local(addr).events("/v1/events") else {
            panic!("an error answer became an event stream");
        };
        assert_eq!(err.code(), Some("too_many_subscribers"), "{err}");
    }
}
