//! A scripted fake of the Anthropic Messages API, for end-to-end tests that run the real
//! Claude Code CLI in a sandbox container.
//!
//! The server binds `0.0.0.0:<ephemeral port>` on the host and serves HTTP/1.1 on a background
//! thread (one thread per connection, keep-alive supported). A container reaches it at its
//! network's gateway address, e.g. `ANTHROPIC_BASE_URL=http://172.17.0.1:<port>`.
//!
//! # Script
//!
//! The test gives a list of [`Step`]s. Every *main conversation* request
//! (`POST /v1/messages` that carries a non-empty `tools` array, see below) consumes the next
//! step, in order, and is answered with it:
//!
//! * [`Step::ToolUse`]: an assistant message with one `tool_use` block, `stop_reason: tool_use`.
//!   The CLI runs the tool and sends the next request with the `tool_result`.
//! * [`Step::Text`]: an assistant message with one text block, `stop_reason: end_turn`; this ends
//!   the CLI's turn (the CLI prints its `result` event and exits in `-p` mode).
//! * [`Step::Error`]: one HTTP error with Anthropic's error body (e.g. 400
//!   `invalid_request_error`), then the script moves on. Claude Code retries: a 400 is retried
//!   at once with a degraded request (fewer betas, more tools) up to 4 times, and 401/429/5xx/529
//!   up to 10 times with exponential back-off (minutes). So an `Error` step followed by more
//!   steps tests recovery.
//! * [`Step::Fail`]: like `Error`, but sticky: this and every later main request gets the error;
//!   the script never moves past it. Use it to make the CLI give up.
//!
//! When the script is exhausted, further main requests get a final text
//! ([`EXHAUSTED_TEXT`]) so the CLI ends its turn instead of hanging; tests can detect this
//! with [`FakeAnthropic::overrun`].
//!
//! # Main vs side requests
//!
//! Besides the agent loop, coding agents send *side* requests to the same endpoint
//! (conversation titles, topic detection, summaries, ...). Those carry no tools: the agent loop
//! always sends its full tool list (`Bash`, `Edit`, `Write`, ...) in `tools`, while side
//! requests send no `tools` key or an empty array. The rule used here is therefore:
//!
//! > a `POST /v1/messages` request is *main* iff its JSON body has a non-empty `tools` array.
//!
//! Side requests are answered with a short text ([`SIDE_TEXT`]) and do not consume a step.
//! Each [`RecordedRequest`] says how it was classified ([`RequestKind`]).
//!
//! Observed (Claude Code 2.1.330, `claude -p`): no side requests at all, only main requests
//! (`/v1/messages?beta=true`, `stream: true`, `max_tokens: 128000`, 12 tools, default model
//! `claude-opus-5-5`), plus `HEAD /api/hello` when `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC` is
//! unset. OpenCode sends a title request first (`claude-haiku-4-5-*`, no tools,
//! `max_tokens: 48000`, so `max_tokens` is no reliable signal) that this rule classifies as side.
//! Caveats: requests of a subagent (Claude's `Task`/`Agent` tool) and Claude Code's cache-sharing
//! forks (compaction, memory extraction; interactive/long sessions only) also carry tools and
//! would consume steps.
//!
//! # Other endpoints
//!
//! * `POST /v1/messages/count_tokens` → `{"input_tokens": N}` (N estimated from the body).
//! * `HEAD` / `GET` on any path → `200` with `{}` (connectivity probes).
//! * anything else → `404` with an Anthropic-style `not_found_error` body.
//!
//! Every request is recorded (method, path with query, headers, raw body, parsed JSON body).
//!
//! # Token usage
//!
//! Answers carry `usage` so the CLI reports tokens and cost: `input_tokens` is the request body
//! length / 4 (at least 1), `output_tokens` is the JSON length of the produced content / 4 (at
//! least 1); cache token fields are 0. Numbers are deterministic for a given request.
//!
//! # Streaming
//!
//! When the request body has `"stream": true` the answer is `text/event-stream`, sent with
//! `Transfer-Encoding: chunked`, one chunk per SSE event: `message_start`,
//! `content_block_start`, `ping`, `content_block_delta` (`text_delta` or `input_json_delta`),
//! `content_block_stop`, `message_delta` (stop reason + output usage), `message_stop`.
//! Otherwise a single JSON `message` object with `Content-Length`.
#![allow(dead_code)] // Tests use different subsets of this helper.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Text answered to side requests (titles, topic checks, ...).
pub const SIDE_TEXT: &str = "ok";

/// Text answered to main requests once the script is exhausted.
pub const EXHAUSTED_TEXT: &str = "(fake-anthropic: script exhausted)";

/// Largest request body accepted (bytes); larger requests get 413 and the connection is closed.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// How long an idle keep-alive connection is kept open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// One scripted answer to a main conversation request.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Ask the CLI to run a tool: `name` is Claude Code's tool name (`Write`, `Edit`, `Bash`,
    /// `Read`, ...), `input` its JSON input, e.g.
    /// `json!({"file_path": "/workspace/a.txt", "content": "hi\n"})` for `Write`,
    /// `json!({"file_path": ..., "old_string": ..., "new_string": ...})` for `Edit`,
    /// `json!({"command": "echo ok > ran.txt", "description": "..."})` for `Bash`.
    ToolUse { name: String, input: Value },
    /// Final assistant text; ends the turn (`stop_reason: end_turn`).
    Text(String),
    /// Answer one request with an HTTP error: `status` (e.g. 400), Anthropic `error_type`
    /// (e.g. `invalid_request_error`) and `message`. The CLI's retry consumes the next step.
    Error {
        status: u16,
        error_type: String,
        message: String,
    },
    /// Answer this and every later main request with an HTTP error (never advances).
    Fail {
        status: u16,
        error_type: String,
        message: String,
    },
}

impl Step {
    /// Shorthand for [`Step::ToolUse`].
    pub fn tool(name: &str, input: Value) -> Step {
        Step::ToolUse {
            name: name.to_string(),
            input,
        }
    }

    /// Shorthand for [`Step::Text`].
    pub fn text(text: &str) -> Step {
        Step::Text(text.to_string())
    }
}

/// How the server classified a request.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestKind {
    /// A main conversation request; it was answered with script step `step` (0-based).
    Main { step: usize },
    /// A main conversation request that arrived after the script ran out.
    Overrun,
    /// A `/v1/messages` request without tools (title, topic, quota, ...).
    Side,
    /// `/v1/messages/count_tokens`.
    CountTokens,
    /// Anything else (probes, unknown paths, unparsable requests).
    Other,
}

/// One HTTP request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request target including any query string, e.g. `/v1/messages?beta=true`.
    pub path: String,
    /// Header names lower-cased, values as sent, in order.
    pub headers: Vec<(String, String)>,
    /// The raw body (lossy UTF-8).
    pub raw_body: String,
    /// The body parsed as JSON (`Value::Null` when empty or not JSON).
    pub body: Value,
    /// How the request was classified and answered.
    pub kind: RequestKind,
}

impl RecordedRequest {
    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `x-api-key` header, if any.
    pub fn api_key(&self) -> Option<&str> {
        self.header("x-api-key")
    }

    /// `model` from the JSON body.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// `stream` from the JSON body (false when absent).
    pub fn stream(&self) -> bool {
        self.body
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether this was a main conversation request (scripted or overrun).
    pub fn is_main(&self) -> bool {
        matches!(self.kind, RequestKind::Main { .. } | RequestKind::Overrun)
    }

    /// All `tool_result` blocks in the body's messages, in order.
    pub fn tool_results(&self) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(messages) = self.body.get("messages").and_then(Value::as_array) {
            for m in messages {
                if let Some(blocks) = m.get("content").and_then(Value::as_array) {
                    for b in blocks {
                        if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                            out.push(b.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// The text of the last `tool_result` in the body (joined if it has several text parts).
    pub fn last_tool_result_text(&self) -> Option<String> {
        let last = self.tool_results().pop()?;
        match last.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(parts)) => Some(
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            _ => Some(String::new()),
        }
    }
}

#[derive(Default)]
struct State {
    script: Vec<Step>,
    cursor: usize,
    next_id: u64,
    requests: Vec<RecordedRequest>,
    required_key: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// The running fake server. Dropping it stops accepting and closes open connections.
pub struct FakeAnthropic {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl FakeAnthropic {
    /// Start serving `script` on `0.0.0.0:<ephemeral port>`; any `x-api-key` is accepted.
    pub fn start(script: Vec<Step>) -> FakeAnthropic {
        Self::start_inner(script, None)
    }

    /// Like [`FakeAnthropic::start`], but `/v1/messages*` requests whose `x-api-key` is not
    /// `key` get `401 authentication_error` (recorded as [`RequestKind::Other`], no step used).
    pub fn start_requiring_key(script: Vec<Step>, key: &str) -> FakeAnthropic {
        Self::start_inner(script, Some(key.to_string()))
    }

    fn start_inner(script: Vec<Step>, required_key: Option<String>) -> FakeAnthropic {
        let listener = TcpListener::bind("0.0.0.0:0").expect("fake-anthropic: bind 0.0.0.0:0");
        let port = listener.local_addr().expect("local_addr").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                script,
                required_key,
                ..State::default()
            }),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("fake-anthropic".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if let Ok(clone) = conn.try_clone() {
                        s.conns.lock().unwrap().push(clone);
                    }
                    let s2 = Arc::clone(&s);
                    let _ = thread::Builder::new()
                        .name("fake-anthropic-conn".into())
                        .spawn(move || serve_connection(conn, &s2));
                }
            })
            .expect("spawn fake-anthropic thread");
        FakeAnthropic {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The port the server listens on (all interfaces).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://<host>:<port>`, for `ANTHROPIC_BASE_URL` (host: e.g. the network gateway IP).
    pub fn base_url(&self, host: &str) -> String {
        format!("http://{host}:{}", self.port)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// Only the main conversation requests, in arrival order.
    pub fn main_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_main())
            .collect()
    }

    /// How many script steps have been served.
    pub fn steps_served(&self) -> usize {
        self.shared.state.lock().unwrap().cursor
    }

    /// Whether a main request arrived after the script was exhausted.
    pub fn overrun(&self) -> bool {
        self.requests()
            .iter()
            .any(|r| r.kind == RequestKind::Overrun)
    }

    /// Append steps to the script (e.g. before resuming a conversation).
    pub fn push_steps(&self, steps: Vec<Step>) {
        self.shared.state.lock().unwrap().script.extend(steps);
    }

    /// Block until at least `n` requests matching `pred` were recorded, or `timeout` passes.
    /// Returns whether the condition was met.
    pub fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&RecordedRequest) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            if st.requests.iter().filter(|r| pred(r)).count() >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// A multi-line human-readable log of all requests (for test failure messages).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, r) in self.requests().iter().enumerate() {
            out.push_str(&format!(
                "#{i} {} {} kind={:?} model={:?} stream={} max_tokens={} tools={} x-api-key={:?}\n",
                r.method,
                r.path,
                r.kind,
                r.model(),
                r.stream(),
                r.body
                    .get("max_tokens")
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                r.body
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(|t| t.len())
                    .unwrap_or(0),
                r.api_key(),
            ));
        }
        out
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor with a throwaway connection so it sees `stopping`.
        let _ =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP handling

pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) enum ReadError {
    /// Clean EOF or I/O error before a request started: just close.
    Closed,
    /// Malformed request: answer 400 and close.
    Bad(&'static str),
    /// Body too large: answer 413 and close.
    TooLarge,
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let req = match read_request(&mut reader) {
            Ok(r) => r,
            Err(ReadError::Closed) => break,
            Err(ReadError::Bad(why)) => {
                let _ = write_json(
                    &mut writer,
                    400,
                    &error_body("invalid_request_error", why),
                    true,
                );
                break;
            }
            Err(ReadError::TooLarge) => {
                let _ = write_json(
                    &mut writer,
                    413,
                    &error_body("request_too_large", "request body too large"),
                    true,
                );
                break;
            }
        };
        let close = wants_close(&req);
        if handle(&req, shared, &mut writer, close).is_err() || close {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

pub(crate) fn wants_close(req: &Request) -> bool {
    req.header("connection")
        .map(|v| v.to_ascii_lowercase().contains("close"))
        .unwrap_or(false)
}

fn read_line(reader: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.clear();
    // Bound header lines so a garbage peer cannot make us buffer forever.
    let n = reader.by_ref().take(64 * 1024).read_until(b'\n', buf)?;
    while buf.last() == Some(&b'\n') || buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(n)
}

pub(crate) fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Request, ReadError> {
    let mut line = Vec::new();
    // Skip stray empty lines between requests (RFC 9112 §2.2).
    loop {
        match read_line(reader, &mut line) {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) if line.is_empty() => continue,
            Ok(_) => break,
        }
    }
    let start = String::from_utf8_lossy(&line).to_string();
    let mut parts = start.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(ReadError::Bad("malformed request line"));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut headers = Vec::new();
    loop {
        match read_line(reader, &mut line) {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) if line.is_empty() => break,
            Ok(_) => {
                let l = String::from_utf8_lossy(&line);
                let Some((k, v)) = l.split_once(':') else {
                    return Err(ReadError::Bad("malformed header"));
                };
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        if headers.len() > 500 {
            return Err(ReadError::Bad("too many headers"));
        }
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    if chunked {
        loop {
            match read_line(reader, &mut line) {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
            let size_str = String::from_utf8_lossy(&line);
            let size_str = size_str.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| ReadError::Bad("bad chunk size"))?;
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    match read_line(reader, &mut line) {
                        Ok(0) | Err(_) => return Err(ReadError::Closed),
                        Ok(_) if line.is_empty() => break,
                        Ok(_) => {}
                    }
                }
                break;
            }
            if req.body.len() + size > MAX_BODY {
                return Err(ReadError::TooLarge);
            }
            let at = req.body.len();
            req.body.resize(at + size, 0);
            reader
                .read_exact(&mut req.body[at..])
                .map_err(|_| ReadError::Closed)?;
            read_line(reader, &mut line).map_err(|_| ReadError::Closed)?; // CRLF after data
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| ReadError::Bad("bad content-length"))?;
        if len > MAX_BODY {
            return Err(ReadError::TooLarge);
        }
        req.body.resize(len, 0);
        reader
            .read_exact(&mut req.body)
            .map_err(|_| ReadError::Closed)?;
    }
    Ok(req)
}

/// What to send back, decided under the state lock, written after it is released.
enum Reply {
    Message {
        content: Vec<Value>,
        stop_reason: &'static str,
    },
    Json {
        status: u16,
        body: Value,
    },
    Empty {
        status: u16,
    },
}

fn handle(req: &Request, shared: &Shared, w: &mut TcpStream, close: bool) -> std::io::Result<()> {
    let raw_body = String::from_utf8_lossy(&req.body).to_string();
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let path_only = req.path.split('?').next().unwrap_or("").to_string();
    let input_tokens = (req.body.len() / 4).max(1) as u64;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake")
        .to_string();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);

    let (reply, msg_id) = {
        let mut st = shared.state.lock().unwrap();
        st.next_id += 1;
        let id = st.next_id;
        let key_ok = match &st.required_key {
            Some(k) => req.header("x-api-key") == Some(k.as_str()),
            None => true,
        };
        let (kind, reply) = match (req.method.as_str(), path_only.as_str()) {
            ("POST", p) if p.starts_with("/v1/messages") && !key_ok => (
                RequestKind::Other,
                Reply::Json {
                    status: 401,
                    body: error_body("authentication_error", "invalid x-api-key"),
                },
            ),
            ("POST", "/v1/messages/count_tokens") => (
                RequestKind::CountTokens,
                Reply::Json {
                    status: 200,
                    body: json!({ "input_tokens": input_tokens }),
                },
            ),
            ("POST", "/v1/messages") if body.is_object() => {
                let has_tools = body
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(|t| !t.is_empty())
                    .unwrap_or(false);
                if !has_tools {
                    (
                        RequestKind::Side,
                        Reply::Message {
                            content: vec![json!({"type": "text", "text": SIDE_TEXT})],
                            stop_reason: "end_turn",
                        },
                    )
                } else if st.cursor < st.script.len() {
                    let step = st.cursor;
                    if !matches!(st.script[step], Step::Fail { .. }) {
                        st.cursor += 1;
                    }
                    let reply = match st.script[step].clone() {
                        Step::ToolUse { name, input } => Reply::Message {
                            content: vec![json!({
                                "type": "tool_use",
                                "id": format!("toolu_fake_{id:06}"),
                                "name": name,
                                "input": input,
                            })],
                            stop_reason: "tool_use",
                        },
                        Step::Text(text) => Reply::Message {
                            content: vec![json!({"type": "text", "text": text})],
                            stop_reason: "end_turn",
                        },
                        Step::Error {
                            status,
                            error_type,
                            message,
                        }
                        | Step::Fail {
                            status,
                            error_type,
                            message,
                        } => Reply::Json {
                            status,
                            body: error_body(&error_type, &message),
                        },
                    };
                    (RequestKind::Main { step }, reply)
                } else {
                    (
                        RequestKind::Overrun,
                        Reply::Message {
                            content: vec![json!({"type": "text", "text": EXHAUSTED_TEXT})],
                            stop_reason: "end_turn",
                        },
                    )
                }
            }
            ("POST", "/v1/messages") => (
                RequestKind::Other,
                Reply::Json {
                    status: 400,
                    body: error_body("invalid_request_error", "body is not a JSON object"),
                },
            ),
            ("HEAD", _) => (RequestKind::Other, Reply::Empty { status: 200 }),
            ("GET", _) => (
                RequestKind::Other,
                Reply::Json {
                    status: 200,
                    body: json!({}),
                },
            ),
            _ => (
                RequestKind::Other,
                Reply::Json {
                    status: 404,
                    body: error_body("not_found_error", &format!("no route for {path_only}")),
                },
            ),
        };
        st.requests.push(RecordedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            headers: req.headers.clone(),
            raw_body,
            body: body.clone(),
            kind: kind.clone(),
        });
        shared.changed.notify_all();
        (reply, format!("msg_fake_{id:06}"))
    };

    match reply {
        Reply::Empty { status } => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n{}\r\n",
                reason(status),
                conn_header(close)
            );
            w.write_all(head.as_bytes())?;
            w.flush()
        }
        Reply::Json { status, body } => write_json(w, status, &body, close),
        Reply::Message {
            content,
            stop_reason,
        } => {
            let output_tokens = (Value::Array(content.clone()).to_string().len() / 4).max(1) as u64;
            if stream {
                write_sse(
                    w,
                    &msg_id,
                    &model,
                    &content,
                    stop_reason,
                    input_tokens,
                    output_tokens,
                    close,
                )
            } else {
                let msg = json!({
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": null,
                    "usage": usage(input_tokens, output_tokens),
                });
                write_json(w, 200, &msg, close)
            }
        }
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    })
}

fn error_body(error_type: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type, "message": message}})
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        529 => "Overloaded",
        _ => "Status",
    }
}

fn conn_header(close: bool) -> &'static str {
    if close {
        "connection: close\r\n"
    } else {
        "connection: keep-alive\r\n"
    }
}

pub(crate) fn write_json(
    w: &mut TcpStream,
    status: u16,
    body: &Value,
    close: bool,
) -> std::io::Result<()> {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nrequest-id: req_fake\r\n{}\r\n",
        reason(status),
        body.len(),
        conn_header(close)
    );
    w.write_all(head.as_bytes())?;
    w.write_all(body.as_bytes())?;
    w.flush()
}

pub(crate) fn write_chunk(w: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    w.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
    w.write_all(data)?;
    w.write_all(b"\r\n")?;
    w.flush()
}

fn sse_event(w: &mut TcpStream, event: &str, data: &Value) -> std::io::Result<()> {
    write_chunk(w, format!("event: {event}\ndata: {data}\n\n").as_bytes())
}

#[allow(clippy::too_many_arguments)]
fn write_sse(
    w: &mut TcpStream,
    msg_id: &str,
    model: &str,
    content: &[Value],
    stop_reason: &str,
    input_tokens: u64,
    output_tokens: u64,
    close: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nrequest-id: req_fake\r\n{}\r\n",
        conn_header(close)
    );
    w.write_all(head.as_bytes())?;
    sse_event(
        w,
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(input_tokens, 1),
        }}),
    )?;
    for (index, block) in content.iter().enumerate() {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("text");
        let (start_block, delta) = if kind == "tool_use" {
            (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            )
        } else {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            )
        };
        sse_event(
            w,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start_block}),
        )?;
        if index == 0 {
            sse_event(w, "ping", &json!({"type": "ping"}))?;
        }
        sse_event(
            w,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )?;
        sse_event(
            w,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        )?;
    }
    sse_event(
        w,
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": output_tokens}}),
    )?;
    sse_event(w, "message_stop", &json!({"type": "message_stop"}))?;
    write_chunk(w, b"")
}
