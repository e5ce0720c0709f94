//! Serving a unix socket so that no client can hold back another, or the
//! thread that hands requests to init's main loop.
//!
//! Every accepted connection gets a thread of its own, and a total deadline
//! and a byte budget for its request: a client that sends one byte at a
//! time is cut off when its time is up, not kept alive by each byte. Replies
//! are written on the connection's own thread within a total deadline too,
//! so a client that does not read its reply only stalls itself. At most
//! `max_clients` connections are served at once; further ones wait in the
//! listen backlog until a slot frees (each slot frees at the latest when a
//! deadline passes), so they are delayed, never refused.
//!
//! The control socket (`control.rs`) uses this. The volume plugin's HTTP
//! socket (`volume_plugin/http.rs`) still has its own loop with the same
//! bounds, except that it closes connections over its limit instead of
//! letting them wait: moving it here means choosing one of the two.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The bounds every connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at the same time; more wait to be accepted.
    pub max_clients: usize,
    /// Total time a client has to send its whole request.
    pub request_deadline: Duration,
    /// Longest request accepted, in bytes.
    pub max_request_bytes: u64,
    /// Total time a client has to take its reply.
    pub reply_deadline: Duration,
}

/// Stack of a connection thread: it parses a line and waits; nothing deep.
const CLIENT_STACK: usize = 128 * 1024;

/// One accepted connection, readable within its request deadline and byte
/// budget ([`Read`] too, for protocols with more than one line).
pub struct Client {
    stream: UnixStream,
    deadline: Instant,
    budget: u64,
    reply_deadline: Duration,
}

impl Client {
    fn new(stream: UnixStream, limits: &Limits) -> Client {
        Client {
            stream,
            deadline: Instant::now() + limits.request_deadline,
            budget: limits.max_request_bytes,
            reply_deadline: limits.reply_deadline,
        }
    }

    /// Read one line (without its newline). A line longer than the budget
    /// is `InvalidData`; a client that runs out of time is `TimedOut`.
    pub fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if self.budget == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request too long",
                ));
            }
            match self.read(&mut byte)? {
                0 => break,
                _ if byte[0] == b'\n' => break,
                _ => line.push(byte[0]),
            }
        }
        String::from_utf8(line)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request is not UTF-8"))
    }

    /// Write the reply (all of it) within the reply deadline, counted from now.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let deadline = Instant::now() + self.reply_deadline;
        let mut rest = bytes;
        while !rest.is_empty() {
            let left = remaining(deadline)?;
            self.stream.set_write_timeout(Some(left))?;
            match self.stream.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Has the client hung up (or sent something after its request)? Asked
    /// while waiting for a slow answer, so a client that gave up does not
    /// keep its thread and slot.
    pub fn hung_up(&self) -> bool {
        let mut byte = [0u8; 1];
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let gone = match (&self.stream).read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        let _ = self.stream.set_nonblocking(false);
        gone
    }
}

impl Read for Client {
    /// Reads within the request's total deadline and byte budget.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let allowed = buf
            .len()
            .min(usize::try_from(self.budget).unwrap_or(usize::MAX));
        if allowed == 0 {
            return Ok(0);
        }
        loop {
            let left = remaining(self.deadline)?;
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut buf[..allowed]) {
                Ok(n) => {
                    self.budget -= n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Time left until `deadline`, or `TimedOut` when it has passed.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

/// Counts busy slots; the accepting thread waits on it for a free one.
struct Slots {
    busy: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn take(&self, max: usize) {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= max {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
    }

    fn give_back(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        *busy = busy.saturating_sub(1);
        self.freed.notify_one();
    }
}

/// Gives its slot back when the connection's thread ends, however it ends.
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// Accept connections forever on a thread of its own and run `handle` for
/// each on a thread of its own, within `limits`.
pub fn serve(
    listener: UnixListener,
    limits: Limits,
    handle: impl Fn(Client) + Send + Sync + 'static,
) {
    let handle = Arc::new(handle);
    let slots = Arc::new(Slots {
        busy: Mutex::new(0),
        freed: Condvar::new(),
    });
    std::thread::spawn(move || {
        loop {
            slots.take(limits.max_clients.max(1));
            let slot = Slot(Arc::clone(&slots));
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    drop(slot);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let handle = Arc::clone(&handle);
            let spawned = std::thread::Builder::new()
                .stack_size(CLIENT_STACK)
                .spawn(move || {
                    let _slot = slot;
                    handle(Client::new(stream, &limits));
                });
            if spawned.is_err() {
                // No thread to be had: the connection (and its slot) was
                // dropped with the closure; the client sees it closed.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(limits: &Limits) -> (Client, UnixStream) {
        let (server, client) = UnixStream::pair().expect("socket pair");
        (Client::new(server, limits), client)
    }

    const LIMITS: Limits = Limits {
        max_clients: 2,
        request_deadline: Duration::from_millis(300),
        max_request_bytes: 16,
        reply_deadline: Duration::from_millis(300),
    };

    #[test]
    fn a_line_is_read_within_budget() {
        let (mut server, mut client) = pair(&LIMITS);
        client.write_all(b"status\nrest").expect("write");
        assert_eq!(server.read_line().expect("line"), "status");
    }

    #[test]
    fn a_long_request_is_refused() {
        let (mut server, mut client) = pair(&LIMITS);
        client.write_all(&[b'x'; 40]).expect("write");
        let error = server.read_line().expect_err("too long");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_deadline_is_total_not_per_byte() {
        let (mut server, mut client) = pair(&LIMITS);
        let trickle = std::thread::spawn(move || {
            // A byte every 100 ms would reset a per-byte timeout forever.
            for _ in 0..10 {
                if client.write_all(b"s").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let error = server.read_line().expect_err("cut off");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(server);
        let _ = trickle.join();
    }
}
