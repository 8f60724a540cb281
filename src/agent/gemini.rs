//! Reading Gemini CLI's `--output-format stream-json` output: one JSON event per line
//! (`init`, `message`, `tool_use`, `tool_result`, `error`, `result`); the final `result`
//! carries the run's token counts. Assistant text arrives in pieces (`"delta": true`). The
//! output comes from the sandbox, so it is untrusted: unparsable lines are shown escaped,
//! never interpreted.

use serde_json::Value;

use super::claude::{RunStats, short, tool_input};
use crate::error::sanitize;

/// Statistics from the `result` event (the last one wins), with the assistant's text after
/// the last tool call as its final message; `None` when the run never reported a result.
pub fn stats(transcript: &str) -> Option<RunStats> {
    let mut found = None;
    let mut text = String::new();
    let mut model = None;
    for line in transcript.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("init") => model = v.get("model").and_then(Value::as_str).map(str::to_string),
            Some("tool_use") => text.clear(),
            Some("message") if v.get("role").and_then(Value::as_str) == Some("assistant") => {
                text.push_str(v.get("content").and_then(Value::as_str).unwrap_or(""));
            }
            Some("result") => {
                let n = |k: &str| v.pointer(&format!("/stats/{k}")).and_then(Value::as_u64);
                found = Some(RunStats {
                    turns: None,
                    model: model.clone(),
                    input_tokens: n("input_tokens"),
                    output_tokens: n("output_tokens"),
                    cost_usd: None,
                    final_message: (!text.trim().is_empty()).then(|| text.trim().to_string()),
                    is_error: v.get("status").and_then(Value::as_str) != Some("success"),
                });
            }
            _ => {}
        }
    }
    found
}

/// Render one output line readably; `None` for events not worth showing.
pub fn render_line(line: &str) -> Option<String> {
    let line = line.trim_end();
    if line.is_empty() {
        return None;
    }
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return Some(sanitize(line));
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    match s("type") {
        "init" => Some(format!(
            "● session started (model {})",
            sanitize(s("model"))
        )),
        "message" if s("role") == "assistant" => {
            let t = s("content");
            (!t.trim().is_empty()).then(|| format!("assistant: {}", sanitize(t.trim())))
        }
        "tool_use" => {
            let input = v.get("parameters").cloned().unwrap_or(Value::Null);
            Some(format!(
                "→ {} {}",
                sanitize(s("tool_name")),
                tool_input(&input)
            ))
        }
        "tool_result" => {
            let err = s("status") != "success";
            let detail = match v.get("output").or_else(|| v.get("error")) {
                Some(Value::String(o)) => o.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            Some(format!(
                "← {}{}",
                if err { "error: " } else { "" },
                short(&detail, 120)
            ))
        }
        "error" => Some(format!("error: {}", short(s("message"), 200))),
        "result" => {
            let st = stats(line).unwrap_or_default();
            Some(format!(
                "■ {}: {}",
                if st.is_error { "failed" } else { "done" },
                st.summary()
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#"{"type":"init","session_id":"s","model":"auto"}
{"type":"message","role":"user","content":"add a file"}
{"type":"message","role":"assistant","content":"Writing","delta":true}
{"type":"tool_use","tool_name":"write_file","tool_id":"t1","parameters":{"file_path":"/workspace/a.txt","content":"hi\u001b[2J"}}
{"type":"tool_result","tool_id":"t1","status":"success","output":""}
not json
{"type":"tool_result","tool_id":"t2","status":"error","error":{"message":"boom"}}
{"type":"message","role":"assistant","content":"All ","delta":true}
{"type":"message","role":"assistant","content":"done.","delta":true}
{"type":"result","status":"success","stats":{"total_tokens":80,"input_tokens":55,"output_tokens":25,"tool_calls":2}}
"#;

    #[test]
    fn stats_come_from_the_result_event() {
        let s = stats(T).unwrap();
        assert_eq!(s.input_tokens, Some(55));
        assert_eq!(s.output_tokens, Some(25));
        assert_eq!(s.final_message.as_deref(), Some("All done."));
        assert!(!s.is_error);
        assert_eq!(s.summary(), "55/25 tokens");
        assert!(stats("{\"type\":\"init\"}\ngarbage").is_none());
        let failed = stats("{\"type\":\"result\",\"status\":\"error\"}").unwrap();
        assert!(failed.is_error);
    }

    #[test]
    fn rendering_shows_messages_and_tools_and_escapes_controls() {
        let out: Vec<String> = T.lines().filter_map(render_line).collect();
        assert_eq!(out[0], "● session started (model auto)");
        assert_eq!(out[1], "assistant: Writing");
        assert!(out[2].starts_with("→ write_file "), "{out:?}");
        assert!(out[2].contains("\\x1b[2J") && !out[2].contains('\x1b'));
        assert_eq!(out[3], "← ");
        assert_eq!(out[4], "not json");
        assert!(out[5].starts_with("← error: "), "{out:?}");
        assert_eq!(out[8], "■ done: 55/25 tokens");
    }
}
