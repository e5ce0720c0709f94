//! The volume plugin's HTTP: a deliberately small HTTP/1.1 server, one
//! request per connection.
//! tiny_http 0.12 (the obvious crate) reads a header line without any length
//! limit and has no read timeout, and runs every connection on a thread of
//! an unbounded pool: a client that sends an endless header grows PID 1's
//! memory until the kernel kills it, and idle connections pin threads
//! forever. Here every size, every wait and the number of clients are
//! bounded; a hostile client costs at most one of `MAX_CLIENTS` threads for
//! `READ_DEADLINE`. Docker's plugin client sends `POST` with a
//! `Content-Length` body, which is all this server accepts.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::err_body;

/// The reply to a request (`path`, `body`): HTTP status and JSON body.
pub type Answer = dyn Fn(&str, &[u8]) -> (u16, Value) + Send + Sync;

/// What Docker sends and expects (it accepts any `+json` version).
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";
/// Request line and headers together; Docker sends about 200 bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// A Create with a key and every option is well under 1 KiB.
pub const MAX_BODY: usize = 64 * 1024;
/// From accepting a connection to having its whole request.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// For sending the reply to a client that does not read it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once; more are closed at once. Each holds a thread.
pub const MAX_CLIENTS: usize = 128;
const CLIENT_STACK: usize = 256 * 1024;

/// Answer every client of `listener` with `answer(path, body)`, each on a
/// thread of its own, at most `MAX_CLIENTS` at once.
pub fn serve(
    listener: UnixListener,
    answer: impl Fn(&str, &[u8]) -> (u16, Value) + Send + Sync + 'static,
) {
    let answer = Arc::new(answer);
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(_) => {
                // Out of descriptors or similar: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::SeqCst);
            continue; // closed unanswered: the client retries
        }
        let (answer, done) = (Arc::clone(&answer), Arc::clone(&active));
        let spawned = std::thread::Builder::new()
            .name("volume-plugin".into())
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                serve_client(&*answer, stream);
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn serve_client(answer: &Answer, mut stream: UnixStream) {
    let deadline = Instant::now() + READ_DEADLINE;
    let (status, body) = match read_request(&mut stream, deadline) {
        Ok(request) if request.method != "POST" => {
            (405, err_body("the plugin protocol uses POST".to_owned()))
        }
        Ok(request) => answer(&request.path, &request.body),
        Err(ReadError::Closed) => return,
        Err(e) => e.response(),
    };
    let _ = write_response(&mut stream, status, &body);
}

#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The client went away before sending a request: nothing to answer.
    Closed,
    TimedOut,
    HeadTooLarge,
    BodyTooLarge,
    /// `Transfer-Encoding`: Docker always sends a `Content-Length`.
    LengthRequired,
    Malformed(String),
}

impl ReadError {
    fn response(self) -> (u16, Value) {
        let (status, message) = match self {
            ReadError::Closed | ReadError::TimedOut => (
                408,
                format!(
                    "no complete request within {}s",
                    READ_DEADLINE.as_secs_f64()
                ),
            ),
            ReadError::HeadTooLarge => (431, format!("request head over {MAX_HEAD} bytes")),
            ReadError::BodyTooLarge => (413, format!("request body over {MAX_BODY} bytes")),
            ReadError::LengthRequired => (
                411,
                "send the body with a Content-Length (no Transfer-Encoding)".to_owned(),
            ),
            ReadError::Malformed(why) => (400, format!("malformed HTTP request: {why}")),
        };
        (status, err_body(message))
    }
}

/// Read one request, in whole, by `deadline`; never more than
/// `MAX_HEAD + MAX_BODY` bytes.
pub fn read_request(
    stream: &mut UnixStream,
    deadline: Instant,
) -> std::result::Result<HttpRequest, ReadError> {
    let mut buffer = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return Err(ReadError::HeadTooLarge);
        }
        if read_some(stream, &mut buffer, MAX_HEAD + 4, deadline)? == 0 {
            return Err(if buffer.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed("connection closed inside the head".into())
            });
        }
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::HeadTooLarge);
    }
    let head = String::from_utf8(buffer[..head_end].to_vec())
        .map_err(|_| ReadError::Malformed("the head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut words = request_line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(ReadError::Malformed("bad request line".into()));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !path.starts_with('/') {
        return Err(ReadError::Malformed("bad request line".into()));
    }
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed("a header without ':'".into()));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            // Digits only (RFC 9110): usize's parser would also take "+5".
            let parsed: usize = Some(value)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| ReadError::Malformed("bad Content-Length".into()))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(ReadError::Malformed("two Content-Lengths".into()));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::LengthRequired);
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY {
        return Err(ReadError::BodyTooLarge);
    }
    let body_start = head_end + 4;
    let wanted = body_start + length;
    while buffer.len() < wanted {
        if read_some(stream, &mut buffer, wanted, deadline)? == 0 {
            return Err(ReadError::Malformed(
                "connection closed inside the body".into(),
            ));
        }
    }
    // Bytes past the body would be a pipelined request: one per connection.
    buffer.truncate(wanted);
    Ok(HttpRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        body: buffer.split_off(body_start),
    })
}

/// Read what is there (at most up to `limit` bytes in `buffer`), waiting no
/// later than `deadline`; 0 means end of stream.
fn read_some(
    stream: &mut UnixStream,
    buffer: &mut Vec<u8>,
    limit: usize,
    deadline: Instant,
) -> std::result::Result<usize, ReadError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ReadError::TimedOut);
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|_| ReadError::Closed)?;
    let mut chunk = [0u8; 4096];
    let room = limit.saturating_sub(buffer.len()).clamp(1, chunk.len());
    loop {
        match stream.read(&mut chunk[..room]) {
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::TimedOut);
            }
            Err(_) => return Err(ReadError::Closed),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

fn write_response(stream: &mut UnixStream, status: u16, body: &Value) -> io::Result<()> {
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.write_all(response.as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)
}
