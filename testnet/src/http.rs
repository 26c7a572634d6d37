//! A small HTTP/1.1 client for the node's JSON API, on `std::net` only.
//!
//! It speaks just what the node's API answers: a status line, headers, and a body whose length
//! `Content-Length` gives (chunked bodies are refused with a clear error). One [`Conn`] keeps
//! its connection open between requests; [`request`] opens one for a single request. The
//! launcher, the process tests and the benchmark all use this one copy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// The largest body read: a block holds at most a few MiB of hex, so a larger answer is not
/// from the node's API, and reading it would only waste memory.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The most header lines read before giving up: the API sends fewer than ten.
const MAX_HEADERS: usize = 100;

/// How long a connection attempt may take on loopback before the node counts as not answering.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to wait for an answer: the API itself gives up on the node after 10 s.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP answer: its status and JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body, parsed.
    pub json: Value,
}

/// One HTTP/1.1 connection to one API, kept open between requests and reopened when the
/// server has dropped it.
#[derive(Debug)]
pub struct Conn {
    addr: SocketAddr,
    connect_timeout: Duration,
    read_timeout: Duration,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    /// A connection to `addr` with the default timeouts; nothing is opened until the first
    /// request.
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_timeouts(addr, CONNECT_TIMEOUT, READ_TIMEOUT)
    }

    /// A connection to `addr` with the given connect and read timeouts.
    pub fn with_timeouts(addr: SocketAddr, connect: Duration, read: Duration) -> Self {
        Self {
            addr,
            connect_timeout: connect,
            read_timeout: read,
            stream: None,
        }
    }

    /// The address this connection talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one request and reads its answer. A kept connection that turns out to be dead is
    /// reopened and the request sent once more (a repeated POST of a transaction is harmless:
    /// the node answers 409 `duplicate`); a fresh connection that fails is an error.
    pub fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<Reply> {
        if self.stream.is_some() {
            match self.exchange(method, path, body, false) {
                Ok(reply) => return Ok(reply),
                Err(_) => self.stream = None,
            }
        }
        self.exchange(method, path, body, false)
    }

    /// One request and answer on the kept connection, opened first if there is none.
    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
        close: bool,
    ) -> Result<Reply> {
        let addr = self.addr;
        let what = || format!("{method} http://{addr}{path}");
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&addr, self.connect_timeout)
                .with_context(|| format!("{}: connecting", what()))?;
            stream
                .set_read_timeout(Some(self.read_timeout))
                .and_then(|()| stream.set_write_timeout(Some(self.read_timeout)))
                .and_then(|()| stream.set_nodelay(true))
                .with_context(what)?;
            self.stream = Some(BufReader::new(stream));
        }
        let stream = self.stream.as_mut().expect("opened just above");
        let body = body.unwrap_or("");
        let connection = if close { "Connection: close\r\n" } else { "" };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{connection}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let reply = send(stream, &request).with_context(what);
        match reply {
            Ok((reply, server_closes)) => {
                if close || server_closes {
                    self.stream = None;
                }
                Ok(reply)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

/// One request on a connection of its own, closed afterwards.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Result<Reply> {
    Conn::new(addr).exchange(method, path, body, true)
}

/// One `GET` with the given timeouts on a connection of its own: for probing a node that may
/// be down or still starting, where the default timeouts would make a status page slow.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Reply> {
    Conn::with_timeouts(addr, timeout, timeout).exchange("GET", path, None, true)
}

/// Writes `request` and reads the answer; also says whether the server will close.
fn send(stream: &mut BufReader<TcpStream>, request: &str) -> Result<(Reply, bool)> {
    stream.get_mut().write_all(request.as_bytes())?;
    let head = read_head(stream)?;
    let raw = match head.length {
        Some(length) => {
            if length > MAX_BODY_BYTES {
                bail!("a body of {length} bytes is over the {MAX_BODY_BYTES}-byte limit");
            }
            let mut raw = vec![0; length];
            stream.read_exact(&mut raw)?;
            raw
        }
        // No length: the body runs until the server closes the connection.
        None if head.close => {
            let mut raw = Vec::new();
            stream
                .take(MAX_BODY_BYTES as u64 + 1)
                .read_to_end(&mut raw)?;
            if raw.len() > MAX_BODY_BYTES {
                bail!("the body is over the {MAX_BODY_BYTES}-byte limit");
            }
            raw
        }
        None => bail!("an answer with neither Content-Length nor Connection: close"),
    };
    let json = serde_json::from_slice(&raw).map_err(|e| {
        let shown = String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned();
        anyhow!(
            "status {}: the body is not JSON ({e}): {shown:?}",
            head.status
        )
    })?;
    Ok((
        Reply {
            status: head.status,
            json,
        },
        head.close,
    ))
}

/// What the response head says about the body.
#[derive(Debug)]
struct Head {
    status: u16,
    length: Option<usize>,
    close: bool,
}

/// Reads a response head: the status, `Content-Length` and whether the server will close.
fn read_head(stream: &mut BufReader<TcpStream>) -> Result<Head> {
    let mut line = String::new();
    if stream.read_line(&mut line)? == 0 {
        bail!("the server closed the connection without answering");
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {:?}", line.trim_end()))?;
    let mut head = Head {
        status,
        length: None,
        close: false,
    };
    for _ in 0..MAX_HEADERS {
        line.clear();
        if stream.read_line(&mut line)? == 0 {
            bail!("the connection closed inside the response head");
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(head);
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse()
                .map_err(|_| anyhow!("bad Content-Length {value:?}"))?;
            head.length = Some(length);
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("Transfer-Encoding {value:?} is not supported by this client");
        }
    }
    bail!("more than {MAX_HEADERS} header lines")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `answers` in order on one accepted connection, then closes it.
    fn serve(answers: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            for answer in answers {
                // Read one request head and its (empty) body.
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
        addr
    }

    #[test]
    fn keep_alive_answers_are_read_by_length() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}",
        ]);
        let mut conn = Conn::new(addr);
        let first = conn.request("GET", "/health", None).unwrap();
        assert_eq!(
            (first.status, first.json["ok"].as_bool()),
            (200, Some(true))
        );
        let second = conn.request("GET", "/nope", None).unwrap();
        assert_eq!(second.status, 404);
    }

    #[test]
    fn bad_answers_are_errors_not_panics() {
        for answer in [
            "garbage\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        ] {
            let addr = serve(vec![answer]);
            let err = request(addr, "GET", "/v1/status", None).unwrap_err();
            assert!(format!("{err:#}").contains("/v1/status"), "{err:#}");
        }
    }

    #[test]
    fn a_closed_port_is_an_error_naming_the_address() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = get(addr, "/v1/status", Duration::from_millis(500)).unwrap_err();
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
