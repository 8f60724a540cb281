//! Reading OpenCode's `opencode run --format json` output: one JSON event per line, each with
//! a `type` (`step_start`, `tool_use`, `text`, `step_finish`, `error`) and a `part`. Every
//! `step_finish` carries that step's tokens and cost, so a run's totals are their sum. The
//! output comes from the sandbox, so it is untrusted: unparsable lines are shown escaped,
//! never interpreted.

use serde_json::Value;

use super::claude::{RunStats, short, tool_input};
use crate::error::sanitize;

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// Totals over the run's steps: turns are model steps, input tokens include cache reads and
/// writes; `None` when no step finished.
pub fn stats(transcript: &str) -> Option<RunStats> {
    let mut s: Option<RunStats> = None;
    let mut last_text = None;
    for line in transcript.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = v.pointer("/part/text").and_then(Value::as_str) {
                    last_text = Some(t.to_string());
                }
            }
            Some("error") => s.get_or_insert_with(RunStats::default).is_error = true,
            Some("step_finish") => {
                let t = v.pointer("/part/tokens").unwrap_or(&Value::Null);
                let st = s.get_or_insert_with(RunStats::default);
                st.turns = Some(st.turns.unwrap_or(0) + 1);
                st.input_tokens = Some(
                    st.input_tokens.unwrap_or(0)
                        + u64_at(t, "/input")
                        + u64_at(t, "/cache/read")
                        + u64_at(t, "/cache/write"),
                );
                st.output_tokens = Some(
                    st.output_tokens.unwrap_or(0) + u64_at(t, "/output") + u64_at(t, "/reasoning"),
                );
                if let Some(c) = v.pointer("/part/cost").and_then(Value::as_f64) {
                    st.cost_usd = Some(st.cost_usd.unwrap_or(0.0) + c);
                }
            }
            _ => {}
        }
    }
    if let Some(st) = s.as_mut() {
        st.final_message = last_text;
    }
    s
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
    let part = v.get("part").unwrap_or(&Value::Null);
    match v.get("type").and_then(Value::as_str).unwrap_or("") {
        "text" => {
            let t = part.get("text").and_then(Value::as_str).unwrap_or("");
            (!t.trim().is_empty()).then(|| format!("assistant: {}", sanitize(t.trim())))
        }
        "tool_use" => {
            let name = part.get("tool").and_then(Value::as_str).unwrap_or("?");
            let state = part.get("state").unwrap_or(&Value::Null);
            let input = state.get("input").cloned().unwrap_or(Value::Null);
            let mut text = format!("→ {} {}", sanitize(name), tool_input(&input));
            let status = state.get("status").and_then(Value::as_str).unwrap_or("");
            let output = match state.get("output").or_else(|| state.get("error")) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            text.push_str(&format!(
                "\n← {}{}",
                if status == "error" { "error: " } else { "" },
                short(&output, 120)
            ));
            Some(text)
        }
        "error" => {
            let e = v.get("error").map(Value::to_string).unwrap_or_default();
            Some(format!("■ failed: {}", short(&e, 200)))
        }
        // The run's totals are a sum over all its steps (`git agent status`); a line only
        // knows its own.
        "step_finish" if part.get("reason").and_then(Value::as_str) == Some("stop") => {
            Some("■ done".to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#"{"type":"step_start","part":{"type":"step-start"}}
{"type":"tool_use","part":{"type":"tool","tool":"write","state":{"status":"completed","input":{"filePath":"/workspace/a.txt","content":"hi\u001b[2J"},"output":"Wrote file successfully."}}}
{"type":"step_finish","part":{"reason":"tool-calls","tokens":{"input":10,"output":7,"reasoning":1,"cache":{"write":2,"read":3}},"cost":0.25}}
not json
{"type":"tool_use","part":{"type":"tool","tool":"bash","state":{"status":"error","input":{"command":"false"},"error":"exit 1"}}}
{"type":"text","part":{"type":"text","text":"All done."}}
{"type":"step_finish","part":{"reason":"stop","tokens":{"input":20,"output":5},"cost":0.5}}
"#;

    #[test]
    fn stats_sum_the_steps() {
        let s = stats(T).unwrap();
        assert_eq!(s.turns, Some(2));
        assert_eq!(s.input_tokens, Some(35));
        assert_eq!(s.output_tokens, Some(13));
        assert_eq!(s.cost_usd, Some(0.75));
        assert_eq!(s.final_message.as_deref(), Some("All done."));
        assert!(!s.is_error);
        assert!(stats("{\"type\":\"text\"}\ngarbage").is_none());
    }

    #[test]
    fn rendering_shows_tools_and_escapes_controls() {
        let out: Vec<String> = T.lines().filter_map(render_line).collect();
        let all = out.join("\n");
        let lines: Vec<&str> = all.lines().collect();
        assert!(lines[0].starts_with("→ write "), "{all}");
        assert!(
            lines[0].contains("\\x1b[2J") && !all.contains('\x1b'),
            "{all}"
        );
        assert_eq!(lines[1], "← Wrote file successfully.");
        assert_eq!(lines[2], "not json");
        assert_eq!(lines[4], "← error: exit 1");
        assert_eq!(lines[5], "assistant: All done.");
        assert_eq!(lines[6], "■ done", "{all}");
    }
}
