//! A scripted fake of the OpenAI Responses API, for end-to-end tests that run the real Codex
//! CLI in a sandbox container (through the task's credential vault).
//!
//! The server binds `0.0.0.0:<ephemeral port>` on the host and serves HTTP/1.1 on background
//! threads (one per connection). Codex reaches it through the vault, whose upstream a test
//! points here with `git config agent.codex.baseUrl http://host.docker.internal:<port>/v1`
//! (see [`FakeOpenAi::base_url`]).
//!
//! # Script
//!
//! Every `POST /v1/responses` consumes the next [`Step`] and is answered with it as a stream
//! of server-sent events, the way the Responses API streams (`"stream": true`):
//! `response.created`, `response.output_item.added` and `.done` with one output item, then
//! `response.completed` carrying `usage`.
//!
//! * [`Step::Shell`]: a `function_call` item named `exec_command` with `{"cmd": ...}`: Codex
//!   runs the command and sends the next request with a `function_call_output` in `input`.
//! * [`Step::Text`]: a `message` item with `output_text`; this ends Codex's turn.
//!
//! A step other than the first of a turn is only served to a request whose `input` carries a
//! `function_call_output` for the previous call (so a step is never consumed by a request
//! that did not follow from the one before); otherwise the request gets a 400.
//! When the script is exhausted requests get [`EXHAUSTED_TEXT`] ([`FakeOpenAi::overrun`]).
//!
//! With a required key, a request whose `Authorization` is not `Bearer <key>` gets 401 and
//! consumes nothing. `GET /v1/models` lists no models; anything else is 404.
//!
//! # Token usage
//!
//! `input_tokens` is the request body's length / 4, `output_tokens` the item's JSON length / 4
//! (each at least 1): deterministic for a given request, and recorded so a test can compare
//! what the agent reported with what was served ([`FakeOpenAi::served_usage`]).
#![allow(dead_code)] // Tests use different subsets of this helper.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Text answered once the script ran out.
pub const EXHAUSTED_TEXT: &str = "(fake-openai: script exhausted)";
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Ask Codex to run a shell command (its `exec_command` tool).
    Shell(String),
    /// A final assistant message; ends the turn.
    Text(String),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub raw_body: String,
    pub body: Value,
    /// The script step it was answered with (`None`: not a scripted answer).
    pub step: Option<usize>,
    pub overrun: bool,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The key of `Authorization: Bearer <key>`.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    /// The `output` of every `function_call_output` in `input`, in order.
    pub fn call_outputs(&self) -> Vec<String> {
        self.body
            .get("input")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("function_call_output"))
            .map(|i| match i.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            })
            .collect()
    }

    fn is_main(&self) -> bool {
        self.step.is_some() || self.overrun
    }
}

#[derive(Default)]
struct State {
    script: Vec<Step>,
    cursor: usize,
    next_id: u64,
    /// The call id of the last `function_call` served (the next step needs its output).
    pending_call: Option<String>,
    requests: Vec<RecordedRequest>,
    required_key: Option<String>,
    /// (input, output) tokens of every scripted answer.
    usage: Vec<(u64, u64)>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// The running fake. Dropping it stops accepting and closes open connections.
pub struct FakeOpenAi {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl FakeOpenAi {
    /// Serve `script`, answering only requests that carry `key`.
    pub fn start_requiring_key(script: Vec<Step>, key: &str) -> FakeOpenAi {
        let listener = TcpListener::bind("0.0.0.0:0").expect("fake-openai: bind");
        let port = listener.local_addr().expect("local_addr").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                script,
                required_key: Some(key.to_string()),
                ..State::default()
            }),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("fake-openai".into())
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
                        .name("fake-openai-conn".into())
                        .spawn(move || serve_connection(conn, &s2));
                }
            })
            .expect("spawn fake-openai thread");
        FakeOpenAi {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://<host>:<port>/v1`: the API base URL (Codex appends `/responses`).
    pub fn base_url(&self, host: &str) -> String {
        format!("http://{host}:{}/v1", self.port)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// The requests answered from the script (or past its end).
    pub fn main_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_main())
            .collect()
    }

    pub fn steps_served(&self) -> usize {
        self.shared.state.lock().unwrap().cursor
    }

    pub fn overrun(&self) -> bool {
        self.requests().iter().any(|r| r.overrun)
    }

    /// Append steps (before resuming a conversation).
    pub fn push_steps(&self, steps: Vec<Step>) {
        self.shared.state.lock().unwrap().script.extend(steps);
    }

    /// The tokens served so far, summed: (input, output).
    pub fn served_usage(&self) -> (u64, u64) {
        let st = self.shared.state.lock().unwrap();
        st.usage
            .iter()
            .fold((0, 0), |(i, o), (a, b)| (i + a, o + b))
    }

    /// Block until `n` scripted requests arrived or `timeout` passed; whether they did.
    pub fn wait_for_main(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            if st.requests.iter().filter(|r| r.is_main()).count() >= n {
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

    /// One line per request, for failure messages.
    pub fn describe(&self) -> String {
        self.requests()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "#{i} {} {} step={:?} overrun={} model={:?} stream={:?} auth={:?} outputs={:?}\n",
                    r.method,
                    r.path,
                    r.step,
                    r.overrun,
                    r.body.get("model"),
                    r.body.get("stream"),
                    r.header("authorization"),
                    r.call_outputs(),
                )
            })
            .collect()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
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

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut w = stream;
    while !shared.stopping.load(Ordering::SeqCst) {
        let Some(req) = read_request(&mut reader) else {
            break;
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        if handle(&req, shared, &mut w, close).is_err() || close {
            break;
        }
    }
    let _ = w.shutdown(Shutdown::Both);
}

fn read_line(reader: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> Option<()> {
    buf.clear();
    let n = reader
        .by_ref()
        .take(64 * 1024)
        .read_until(b'\n', buf)
        .ok()?;
    if n == 0 {
        return None;
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Some(())
}

/// One request; `None` when the peer closed or sent something unreadable.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = Vec::new();
    loop {
        read_line(reader, &mut line)?;
        if !line.is_empty() {
            break;
        }
    }
    let start = String::from_utf8_lossy(&line).to_string();
    let mut parts = start.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        read_line(reader, &mut line)?;
        if line.is_empty() {
            break;
        }
        let l = String::from_utf8_lossy(&line);
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            read_line(reader, &mut line)?;
            let size = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                loop {
                    read_line(reader, &mut line)?;
                    if line.is_empty() {
                        break;
                    }
                }
                break;
            }
            if req.body.len() + size > MAX_BODY {
                return None;
            }
            let at = req.body.len();
            req.body.resize(at + size, 0);
            reader.read_exact(&mut req.body[at..]).ok()?;
            read_line(reader, &mut line)?;
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.trim().parse().ok()?;
        if len > MAX_BODY {
            return None;
        }
        req.body.resize(len, 0);
        reader.read_exact(&mut req.body).ok()?;
    }
    Some(req)
}

enum Reply {
    Item {
        item: Value,
        input: u64,
        output: u64,
    },
    Json {
        status: u16,
        body: Value,
    },
}

fn error(status: u16, message: &str) -> Reply {
    Reply::Json {
        status,
        body: json!({"error": {"message": message, "type": "invalid_request_error"}}),
    }
}

fn handle(req: &Request, shared: &Shared, w: &mut TcpStream, close: bool) -> std::io::Result<()> {
    let raw_body = String::from_utf8_lossy(&req.body).to_string();
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let path = req.path.split('?').next().unwrap_or("").to_string();
    let (reply, id) = {
        let mut st = shared.state.lock().unwrap();
        st.next_id += 1;
        let id = st.next_id;
        let mut recorded = RecordedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            headers: req.headers.clone(),
            raw_body,
            body: body.clone(),
            step: None,
            overrun: false,
        };
        let key_ok = st
            .required_key
            .as_ref()
            .is_none_or(|k| recorded.bearer() == Some(k.as_str()));
        let reply = match (req.method.as_str(), path.as_str()) {
            (_, p) if p.starts_with("/v1/") && !key_ok => error(401, "invalid api key"),
            ("GET", "/v1/models") => Reply::Json {
                status: 200,
                body: json!({"object": "list", "data": []}),
            },
            ("POST", "/v1/responses") if body.is_object() => {
                let outputs: Vec<String> = body
                    .get("input")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|i| {
                        i.get("type").and_then(Value::as_str) == Some("function_call_output")
                    })
                    .filter_map(|i| i.get("call_id").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect();
                let follows = st.pending_call.as_ref().is_none_or(|c| outputs.contains(c));
                let input = (req.body.len() as u64 / 4).max(1);
                if !follows {
                    error(
                        400,
                        "the previous function_call has no function_call_output",
                    )
                } else if st.cursor < st.script.len() {
                    let step = st.cursor;
                    st.cursor += 1;
                    recorded.step = Some(step);
                    let item = match st.script[step].clone() {
                        Step::Shell(cmd) => {
                            let call = format!("call_fake_{id:06}");
                            st.pending_call = Some(call.clone());
                            json!({"type": "function_call", "id": format!("fc_fake_{id:06}"),
                                   "call_id": call, "name": "exec_command",
                                   "arguments": json!({"cmd": cmd}).to_string()})
                        }
                        Step::Text(text) => {
                            st.pending_call = None;
                            message(id, &text)
                        }
                    };
                    let output = (item.to_string().len() as u64 / 4).max(1);
                    st.usage.push((input, output));
                    Reply::Item {
                        item,
                        input,
                        output,
                    }
                } else {
                    recorded.overrun = true;
                    st.pending_call = None;
                    Reply::Item {
                        item: message(id, EXHAUSTED_TEXT),
                        input,
                        output: 1,
                    }
                }
            }
            ("POST", "/v1/responses") => error(400, "the body is not a JSON object"),
            _ => error(404, &format!("no route for {path}")),
        };
        st.requests.push(recorded);
        shared.changed.notify_all();
        (reply, id)
    };
    let conn = if close { "close" } else { "keep-alive" };
    match reply {
        Reply::Json { status, body } => {
            let body = body.to_string();
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {conn}\r\n\r\n",
                body.len()
            );
            w.write_all(head.as_bytes())?;
            w.write_all(body.as_bytes())?;
            w.flush()
        }
        Reply::Item {
            item,
            input,
            output,
        } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: {conn}\r\n\r\n"
            );
            w.write_all(head.as_bytes())?;
            let rid = format!("resp_fake_{id:06}");
            let events = [
                json!({"type": "response.created", "response": {"id": rid}}),
                json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
                json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
                json!({"type": "response.completed", "response": {"id": rid, "usage": {
                    "input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": input + output}}}),
            ];
            for e in events {
                let data = format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap());
                w.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
                w.write_all(data.as_bytes())?;
                w.write_all(b"\r\n")?;
                w.flush()?;
            }
            w.write_all(b"0\r\n\r\n")?;
            w.flush()
        }
    }
}

fn message(id: u64, text: &str) -> Value {
    json!({"type": "message", "id": format!("msg_fake_{id:06}"), "role": "assistant",
           "status": "completed",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}
