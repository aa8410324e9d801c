//! [`Qmp`]: a synchronous client of a QEMU monitor (QMP) on a unix socket: a running VM's
//! (`-qmp unix:PATH,server=on,wait=off`, libvirt's `monitor.sock`) or a
//! `qemu-storage-daemon`'s (`--monitor`).
//!
//! ```text
//! connect(path, timeout)  connect -> the greeting {"QMP": {...}} (anything else: not a QMP
//!                         monitor) -> qmp_capabilities
//! execute(cmd, args)      {"execute", "arguments", "id": n} -> lines until the reply with id n;
//!                         events ({"event": ..}) are kept (the newest 256) for wait_event
//!                         {"return": v} -> v;  {"error": {class, desc}} -> Error::QmpCommand
//! transaction(actions)    execute("transaction", {"actions": [{type, data}, ...]}): all or none
//! ```
//!
//! Every read is bounded by the timeout (the time left of it, for a reply spread over many
//! reads), every line by [`MAX_LINE`]. A monitor that does not answer in time, closes the
//! connection mid-reply or sends what is not JSON leaves the client broken: every later
//! call fails at once with the first reason, since the replies can no longer be matched to
//! their commands.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Error, QmpRefusal, Result};

/// The longest line (one JSON message) read from the monitor.
pub const MAX_LINE: usize = 16 << 20;

/// Events kept for [`Qmp::wait_event`]; older ones are dropped.
const KEPT_EVENTS: usize = 256;

/// One action of a QMP `transaction`: `{"type": kind, "data": data}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub kind: String,
    pub data: Value,
}

impl Action {
    pub fn new(kind: &str, data: Value) -> Action {
        Action {
            kind: kind.to_owned(),
            data,
        }
    }
}

/// A connection to a QEMU monitor in command mode.
#[derive(Debug)]
pub struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    timeout: Duration,
    next_id: u64,
    events: VecDeque<Value>,
    /// Why the connection can no longer be used, once it cannot.
    broken: Option<String>,
}

impl Qmp {
    /// Connects to the monitor at `path`, reads its greeting and leaves capabilities
    /// negotiation. Each step waits `timeout` at most.
    ///
    /// Errors ([`Error::Qmp`]): no socket or nobody listening, a peer that is not a QMP
    /// monitor (no `{"QMP": ..}` greeting), no greeting in time.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let stream = UnixStream::connect(path).map_err(|e| Error::Qmp {
            socket: path.to_owned(),
            reason: format!("cannot connect: {e}"),
        })?;
        let writer = stream.try_clone().map_err(|e| Error::io(path, e))?;
        writer
            .set_write_timeout(Some(timeout))
            .map_err(|e| Error::io(path, e))?;
        let mut qmp = Qmp {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
            timeout,
            next_id: 1,
            events: VecDeque::new(),
            broken: None,
        };
        let deadline = Instant::now() + timeout;
        let greeting = match qmp.read_message(deadline, "the greeting") {
            Err(Error::Qmp { socket, reason }) if reason.contains("no answer") => {
                return Err(Error::Qmp {
                    socket,
                    reason: format!(
                        "{reason} (a QEMU monitor serves one client at a time: is another \
                         one connected, e.g. libvirt? give blockvault a monitor of its own)"
                    ),
                });
            }
            other => other?,
        };
        if greeting.get("QMP").is_none() {
            return Err(qmp.fail(format!(
                "not a QMP monitor: its first message is not a QMP greeting: {}",
                clip(&greeting.to_string())
            )));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// The monitor's socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `command` with `arguments` (an object, or none) and returns its `return` value.
    ///
    /// Errors: [`Error::QmpCommand`] when QEMU refuses the command (its class and words, and
    /// the command's name); [`Error::Qmp`] when the monitor does not answer within the
    /// timeout, closes the connection or sends what is not QMP (the client is broken from
    /// then on).
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        if let Some(reason) = &self.broken {
            return Err(Error::Qmp {
                socket: self.path.clone(),
                reason: format!("{command}: the connection is broken: {reason}"),
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        let mut line = message.to_string();
        line.push('\n');
        if let Err(e) = self.writer.write_all(line.as_bytes()) {
            let closed = matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            );
            return Err(self.fail(if closed {
                format!("{command}: QEMU closed the monitor connection ({e})")
            } else {
                format!("{command}: cannot send: {e}")
            }));
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let reply = self.read_message(deadline, command)?;
            if reply.get("event").is_some() {
                if self.events.len() == KEPT_EVENTS {
                    self.events.pop_front();
                }
                self.events.push_back(reply);
                continue;
            }
            // A reply without an id answers a command QEMU could not parse: ours.
            match reply.get("id") {
                Some(got) if got != &json!(id) => {
                    return Err(self.fail(format!(
                        "{command}: a reply for another command (id {got}, expected {id})"
                    )));
                }
                _ => {}
            }
            if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = reply.get("error") {
                let text = |key: &str| {
                    error
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                return Err(Error::QmpCommand(Box::new(QmpRefusal {
                    socket: self.path.clone(),
                    command: command.to_owned(),
                    class: text("class"),
                    desc: text("desc"),
                })));
            }
            return Err(self.fail(format!(
                "{command}: a reply that is neither a return nor an error: {}",
                clip(&reply.to_string())
            )));
        }
    }

    /// Runs `actions` as one QMP `transaction`: QEMU applies all of them at one instant, or
    /// none.
    pub fn transaction(&mut self, actions: &[Action]) -> Result<Value> {
        let actions: Vec<Value> = actions
            .iter()
            .map(|a| json!({ "type": a.kind, "data": a.data }))
            .collect();
        self.execute("transaction", Some(json!({ "actions": actions })))
    }

    /// Takes the events received so far (oldest first).
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// Waits (at most `timeout`) for an event named `name` whose `data` satisfies `matches`,
    /// among those kept and those still to come; it is consumed.
    pub fn wait_event(
        &mut self,
        name: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.events.iter().position(|e| {
                e.get("event").and_then(Value::as_str) == Some(name)
                    && matches(e.get("data").unwrap_or(&Value::Null))
            });
            if let Some(i) = found {
                return Ok(self.events.remove(i).unwrap_or(Value::Null));
            }
            if Instant::now() >= deadline {
                return Err(Error::Qmp {
                    socket: self.path.clone(),
                    reason: format!("no {name} event within {} ms", timeout.as_millis()),
                });
            }
            // Events arrive with command replies: a cheap command brings them in.
            self.execute("query-version", None)?;
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads one JSON message before `deadline`.
    fn read_message(&mut self, deadline: Instant, during: &str) -> Result<Value> {
        let mut line: Vec<u8> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.fail(format!(
                    "{during}: no answer within {} ms",
                    self.timeout.as_millis()
                )));
            }
            if let Err(e) = self.reader.get_ref().set_read_timeout(Some(left)) {
                return Err(self.fail(format!("{during}: {e}")));
            }
            let available = match self.reader.fill_buf() {
                Ok([]) => {
                    return Err(self.fail(format!(
                        "{during}: QEMU closed the monitor connection{}",
                        if line.is_empty() {
                            String::new()
                        } else {
                            " in the middle of a reply".to_owned()
                        }
                    )));
                }
                Ok(available) => available,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.fail(format!(
                        "{during}: no answer within {} ms",
                        self.timeout.as_millis()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Err(self.fail(format!(
                        "{during}: QEMU closed the monitor connection ({e})"
                    )));
                }
                Err(e) => return Err(self.fail(format!("{during}: {e}"))),
            };
            let taken = match available.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => available.len(),
            };
            line.extend_from_slice(&available[..taken]);
            self.reader.consume(taken);
            // QMP speaks JSON objects: a peer whose first byte is anything else (an NBD
            // server's binary greeting, a shell) is refused at once, not after the timeout.
            if let Some(&first) = line.iter().find(|b| !b.is_ascii_whitespace())
                && first != b'{'
            {
                return Err(self.fail(format!(
                    "{during}: not a QMP message (not a JSON object): {}",
                    clip(String::from_utf8_lossy(&line).trim())
                )));
            }
            if line.len() > MAX_LINE {
                return Err(self.fail(format!("{during}: a message longer than {MAX_LINE} bytes")));
            }
            if line.last() != Some(&b'\n') {
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                line.clear();
                continue;
            }
            return match serde_json::from_str::<Value>(&text) {
                Ok(value) if value.is_object() => Ok(value),
                _ => Err(self.fail(format!(
                    "{during}: not a QMP message (not a JSON object): {}",
                    clip(text.trim())
                ))),
            };
        }
    }

    /// Marks the connection broken for `reason` and returns the error saying so.
    fn fail(&mut self, reason: String) -> Error {
        self.reader
            .get_ref()
            .shutdown(std::net::Shutdown::Both)
            .ok();
        self.broken.get_or_insert_with(|| reason.clone());
        Error::Qmp {
            socket: self.path.clone(),
            reason,
        }
    }
}

/// The start of `text`, for messages.
fn clip(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake peer on a socket in `dir` that sends `script`'s first line after accepting and
    /// each next one after reading a line, then keeps the connection open for `hold`.
    fn peer(dir: &Path, script: Vec<String>, hold: Duration) -> PathBuf {
        let path = dir.join("peer.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut lines =
                    BufReader::new(stream.try_clone().expect("clone the stream")).lines();
                for (i, line) in script.into_iter().enumerate() {
                    if i > 0 && !matches!(lines.next(), Some(Ok(_))) {
                        return;
                    }
                    if stream.write_all(line.as_bytes()).is_err() {
                        return;
                    }
                }
                std::thread::sleep(hold);
            }
        });
        path
    }

    #[test]
    fn a_silent_peer_is_a_timeout_not_a_hang() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = peer(dir.path(), vec![], Duration::from_secs(5));
        let started = Instant::now();
        let err = Qmp::connect(&path, Duration::from_millis(200)).expect_err("silent");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(err, Error::Qmp { .. }), "{err:?}");
        assert!(err.to_string().contains("no answer within 200 ms"), "{err}");
    }

    #[test]
    fn a_peer_that_closes_mid_reply_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = vec![
            "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n".to_owned(),
            "{\"return\": {}, \"id\"".to_owned(),
        ];
        let path = peer(dir.path(), script, Duration::ZERO);
        let err = Qmp::connect(&path, Duration::from_secs(5)).expect_err("cut short");
        let text = err.to_string();
        assert!(text.contains("qmp_capabilities"), "{text}");
        assert!(text.contains("in the middle of a reply"), "{text}");
    }

    #[test]
    fn an_oversized_or_garbled_message_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = peer(
            dir.path(),
            vec!["[1, 2, 3]\n".to_owned()],
            Duration::from_secs(1),
        );
        let err = Qmp::connect(&path, Duration::from_secs(5)).expect_err("garbled");
        assert!(err.to_string().contains("not a QMP message"), "{err}");
    }
}
