//! Reading Claude Code's `--output-format stream-json` transcript: one JSON event per line
//! (`system`, `assistant`, `user`, `result`). The transcript comes from the sandbox, so it is
//! untrusted: unparsable lines are shown escaped, never interpreted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::sanitize;

/// What a finished run reported about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    pub turns: Option<u64>,
    /// The model the run used, when its transcript says (for pricing, see
    /// [`super::prices`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub final_message: Option<String>,
    pub is_error: bool,
}

impl RunStats {
    /// `3 turns, 1200/340 tokens, $0.0123`, leaving out what is unknown.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.turns {
            parts.push(format!("{t} turn{}", if t == 1 { "" } else { "s" }));
        }
        if let (Some(i), Some(o)) = (self.input_tokens, self.output_tokens) {
            parts.push(format!("{i}/{o} tokens"));
        }
        if let Some(c) = self.cost_usd {
            parts.push(format!("${c:.4}"));
        }
        parts.join(", ")
    }
}

fn u64_at(v: &Value, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_u64()
}

/// Statistics from the transcript's `result` event (the last one wins); `None` when the
/// run never reported one.
pub fn stats(transcript: &str) -> Option<RunStats> {
    let mut found = None;
    let mut model = None;
    for line in transcript.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        let kind = v.get("type").and_then(Value::as_str);
        if kind == Some("system")
            && let Some(m) = v.get("model").and_then(Value::as_str)
        {
            model = Some(m.to_string());
        }
        if kind != Some("result") {
            continue;
        }
        let input = [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ]
        .iter()
        .filter_map(|k| u64_at(&v, &["usage", k]))
        .reduce(|a, b| a + b);
        found = Some(RunStats {
            turns: u64_at(&v, &["num_turns"]),
            model: model.clone(),
            input_tokens: input,
            output_tokens: u64_at(&v, &["usage", "output_tokens"]),
            cost_usd: v.get("total_cost_usd").and_then(Value::as_f64),
            final_message: v.get("result").and_then(Value::as_str).map(str::to_string),
            is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    found
}

pub(crate) fn short(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let clean = sanitize(&one_line);
    if clean.chars().count() > max {
        format!("{}…", clean.chars().take(max).collect::<String>())
    } else {
        clean
    }
}

pub(crate) fn tool_input(input: &Value) -> String {
    match input {
        Value::Object(map) => map
            .iter()
            .take(3)
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("{k}={}", short(&v, 60))
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => short(&other.to_string(), 80),
    }
}

fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// Render one transcript line readably (messages and tool calls); `None` for events not
/// worth showing.
pub fn render_line(line: &str) -> Option<String> {
    let line = line.trim_end();
    if line.is_empty() {
        return None;
    }
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return Some(sanitize(line));
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "system" => {
            let model = v.get("model").and_then(Value::as_str).unwrap_or("?");
            (v.get("subtype").and_then(Value::as_str) == Some("init"))
                .then(|| format!("● session started (model {})", sanitize(model)))
        }
        "assistant" | "user" => {
            let content = v.pointer("/message/content")?;
            let mut out = Vec::new();
            for block in content.as_array().into_iter().flatten() {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = block.get("text").and_then(Value::as_str).unwrap_or("");
                        if !t.trim().is_empty() {
                            out.push(format!("{kind}: {}", sanitize(t.trim())));
                        }
                    }
                    Some("tool_use") => {
                        let name = block.get("name").and_then(Value::as_str).unwrap_or("?");
                        let input = block.get("input").cloned().unwrap_or(Value::Null);
                        out.push(format!("→ {} {}", sanitize(name), tool_input(&input)));
                    }
                    Some("tool_result") => {
                        let text = result_text(block.get("content").unwrap_or(&Value::Null));
                        let err = block.get("is_error").and_then(Value::as_bool) == Some(true);
                        out.push(format!(
                            "← {}{}",
                            if err { "error: " } else { "" },
                            short(&text, 120)
                        ));
                    }
                    _ => {}
                }
            }
            (!out.is_empty()).then(|| out.join("\n"))
        }
        "result" => {
            let s = stats(line).unwrap_or_default();
            let mut text = format!(
                "■ {}: {}",
                if s.is_error { "failed" } else { "done" },
                s.summary()
            );
            if let Some(m) = &s.final_message {
                text.push_str(&format!("\n{}", sanitize(m.trim())));
            }
            Some(text)
        }
        _ => None,
    }
}

/// Render a whole transcript.
pub fn render(transcript: &str) -> String {
    let mut out = String::new();
    for line in transcript.lines() {
        if let Some(r) = render_line(line) {
            out.push_str(&r);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#"{"type":"system","subtype":"init","model":"claude-test","tools":["Write"]}
{"type":"assistant","message":{"content":[{"type":"text","text":"I'll write it."},{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/workspace/hello.txt","content":"hi\u001b[2J"}}]}}
{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"File created"}]}}
not json at all
{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t2","is_error":true,"content":[{"type":"text","text":"boom"}]}]}}
{"type":"result","subtype":"success","is_error":false,"num_turns":3,"result":"All done.","total_cost_usd":0.0123,"usage":{"input_tokens":100,"cache_read_input_tokens":20,"output_tokens":30}}
"#;

    #[test]
    fn stats_come_from_the_result_event() {
        let s = stats(T).unwrap();
        assert_eq!(s.turns, Some(3));
        assert_eq!(s.model.as_deref(), Some("claude-test"));
        assert_eq!(s.input_tokens, Some(120));
        assert_eq!(s.output_tokens, Some(30));
        assert_eq!(s.cost_usd, Some(0.0123));
        assert_eq!(s.final_message.as_deref(), Some("All done."));
        assert_eq!(s.summary(), "3 turns, 120/30 tokens, $0.0123");
        assert!(stats("{\"type\":\"assistant\"}\ngarbage").is_none());
    }

    #[test]
    fn rendering_shows_messages_and_tools_and_escapes_controls() {
        let r = render(T);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[0], "● session started (model claude-test)");
        assert_eq!(lines[1], "assistant: I'll write it.");
        assert!(lines[2].starts_with("→ Write "), "{}", lines[2]);
        assert!(lines[2].contains("\\x1b[2J") && !lines[2].contains('\x1b'));
        assert_eq!(lines[3], "← File created");
        assert_eq!(lines[4], "not json at all");
        assert_eq!(lines[5], "← error: boom");
        assert_eq!(lines[6], "■ done: 3 turns, 120/30 tokens, $0.0123");
        assert_eq!(lines[7], "All done.");
    }
}
