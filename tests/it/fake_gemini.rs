//! A scripted fake of the Gemini API (generativelanguage.googleapis.com), for end-to-end
//! tests that run the real Gemini CLI in a sandbox container. Its HTTP plumbing is
//! [`crate::fake_anthropic`]'s.
//!
//! Observed (Gemini CLI 0.61.0, headless, API-key auth): the CLI sends its key in the
//! `x-goog-api-key` header; a *side* request first (`POST
//! /v1beta/models/<flash-lite>:generateContent`, no `tools`, the model router's choice), then
//! *main* requests `POST /v1beta/models/<model>:streamGenerateContent?alt=sse` with the full
//! tool list in `tools[0].functionDeclarations`. The answer is server-sent events, each
//! `data: <GenerateContentResponse JSON>`; a `functionCall` part makes the CLI run the tool
//! and send the next request with a `functionResponse` part, and a text part ends its turn.
//!
//! Every main request (a `generateContent` or `streamGenerateContent` whose body has a
//! non-empty `tools`) consumes the next [`Step`]; once the script is exhausted the answer is
//! [`EXHAUSTED_TEXT`] (see [`FakeGemini::overrun`]). Side requests get `{"model_choice":
//! "flash"}`-like text that consumes nothing. With a required key, any other key gets 401.
//! Answers carry `usageMetadata` (prompt tokens: body length / 4; candidates: 5).
#![allow(dead_code)]

use std::io::BufReader;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{Value, json};

use crate::fake_anthropic::{ReadError, read_request, wants_close, write_chunk, write_json};

pub const EXHAUSTED_TEXT: &str = "(fake-gemini: script exhausted)";
pub const CANDIDATE_TOKENS: u64 = 5;

/// One scripted answer to a main request.
#[derive(Debug, Clone)]
pub enum Step {
    /// A `functionCall` part: the Gemini CLI's tool name (`write_file`, `replace`,
    /// `run_shell_command`, ...) and its arguments.
    Call { name: String, args: Value },
    /// A final text part; ends the CLI's turn.
    Text(String),
}

impl Step {
    pub fn call(name: &str, args: Value) -> Step {
        Step::Call {
            name: name.into(),
            args,
        }
    }

    pub fn text(t: &str) -> Step {
        Step::Text(t.into())
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// It consumed a step (or overran the script).
    pub main: bool,
    pub overrun: bool,
    /// It was refused for its key.
    pub unauthorized: bool,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn api_key(&self) -> Option<&str> {
        self.header("x-goog-api-key")
    }

    /// The `functionResponse` parts the request carries, in order.
    pub fn function_responses(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for c in self.body["contents"].as_array().into_iter().flatten() {
            for p in c["parts"].as_array().into_iter().flatten() {
                if let Some(r) = p.get("functionResponse") {
                    out.push(r.clone());
                }
            }
        }
        out
    }
}

#[derive(Default)]
struct State {
    script: Vec<Step>,
    cursor: usize,
    requests: Vec<Recorded>,
    key: Option<String>,
}

/// The running fake; dropping it stops it.
pub struct FakeGemini {
    port: u16,
    state: Arc<Mutex<State>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeGemini {
    /// Serve `script`, answering only requests that carry `key`.
    pub fn start_requiring_key(script: Vec<Step>, key: &str) -> FakeGemini {
        let listener = TcpListener::bind("0.0.0.0:0").expect("fake-gemini: bind");
        let port = listener.local_addr().expect("local_addr").port();
        let state = Arc::new(Mutex::new(State {
            script,
            key: Some(key.to_string()),
            ..State::default()
        }));
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, stop) = (Arc::clone(&state), Arc::clone(&stopping));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                thread::spawn(move || serve(conn, &s));
            }
        });
        FakeGemini {
            port,
            state,
            stopping,
        }
    }

    pub fn base_url(&self, host: &str) -> String {
        format!("http://{host}:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn main_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.main).collect()
    }

    pub fn steps_served(&self) -> usize {
        self.state.lock().unwrap().cursor
    }

    pub fn overrun(&self) -> bool {
        self.requests().iter().any(|r| r.overrun)
    }

    pub fn push_steps(&self, steps: Vec<Step>) {
        self.state.lock().unwrap().script.extend(steps);
    }

    pub fn describe(&self) -> String {
        self.requests()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "#{i} {} {} main={} overrun={} unauthorized={} tools={} key={:?}\n",
                    r.method,
                    r.path,
                    r.main,
                    r.overrun,
                    r.unauthorized,
                    r.body["tools"].as_array().map(|t| t.len()).unwrap_or(0),
                    r.api_key()
                )
            })
            .collect()
    }
}

impl Drop for FakeGemini {
    fn drop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut w = stream;
    loop {
        let req = match read_request(&mut reader) {
            Ok(r) => r,
            Err(ReadError::Closed) => break,
            Err(_) => {
                let _ = write_json(&mut w, 400, &error(400, "bad request"), true);
                break;
            }
        };
        let close = wants_close(&req);
        if answer(&req, state, &mut w, close).is_err() || close {
            break;
        }
    }
    let _ = w.shutdown(Shutdown::Both);
}

fn error(code: u16, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": "INVALID_ARGUMENT"}})
}

fn answer(
    req: &crate::fake_anthropic::Request,
    state: &Mutex<State>,
    w: &mut TcpStream,
    close: bool,
) -> std::io::Result<()> {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let path_only = req.path.split('?').next().unwrap_or("").to_string();
    let generate = req.method == "POST"
        && (path_only.ends_with(":generateContent")
            || path_only.ends_with(":streamGenerateContent"));
    let has_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let mut rec = Recorded {
        method: req.method.clone(),
        path: req.path.clone(),
        headers: req.headers.clone(),
        body: body.clone(),
        main: false,
        overrun: false,
        unauthorized: false,
    };
    let parts = {
        let mut st = state.lock().unwrap();
        let key_ok = st.key.is_none() || req.header("x-goog-api-key") == st.key.as_deref();
        let parts = if !key_ok {
            rec.unauthorized = true;
            None
        } else if !generate {
            None
        } else if !has_tools {
            Some(vec![
                json!({"text": "{\"reasoning\": \"simple\", \"model_choice\": \"flash\"}"}),
            ])
        } else {
            rec.main = true;
            let step = st.script.get(st.cursor).cloned();
            if step.is_some() {
                st.cursor += 1;
            } else {
                rec.overrun = true;
            }
            Some(match step {
                Some(Step::Call { name, args }) => {
                    vec![json!({"functionCall": {"name": name, "args": args}})]
                }
                Some(Step::Text(t)) => vec![json!({"text": t})],
                None => vec![json!({"text": EXHAUSTED_TEXT})],
            })
        };
        st.requests.push(rec.clone());
        parts
    };
    if rec.unauthorized {
        return write_json(w, 401, &error(401, "API key not valid"), close);
    }
    let Some(parts) = parts else {
        return write_json(w, 404, &error(404, "not found"), close);
    };
    let prompt_tokens = (req.body.len() / 4).max(1) as u64;
    let chunk = json!({
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": CANDIDATE_TOKENS,
            "totalTokenCount": prompt_tokens + CANDIDATE_TOKENS,
        },
        "modelVersion": "gemini-fake",
    });
    if !req.path.contains("alt=sse") {
        return write_json(w, 200, &chunk, close);
    }
    use std::io::Write;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: {}\r\n\r\n",
        if close { "close" } else { "keep-alive" }
    );
    w.write_all(head.as_bytes())?;
    write_chunk(w, format!("data: {chunk}\r\n\r\n").as_bytes())?;
    write_chunk(w, b"")
}
