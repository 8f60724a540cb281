//! Reading Codex's `codex exec --json` transcript: one JSON event per line (`thread.started`,
//! `turn.started`, `item.started`/`item.completed` with an item such as `agent_message`,
//! `command_execution` or `file_change`, `turn.completed` with the token usage,
//! `turn.failed`, `error`). The transcript comes from the sandbox, so it is untrusted:
//! unparsable lines are shown escaped, never interpreted, and every shown string is escaped.

use serde_json::Value;

use super::claude::RunStats;
use crate::error::sanitize;

fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Statistics from the transcript: tokens from the last `turn.completed` (Codex reports the
/// conversation's running total there, so a resumed run counts the earlier ones too), the
/// last agent message, and whether the run ended in a failure. `None` when the transcript
/// has no Codex event at all.
pub fn stats(transcript: &str) -> Option<RunStats> {
    let mut seen = false;
    let mut s = RunStats::default();
    for line in transcript.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("thread.started" | "turn.started") => seen = true,
            Some("turn.completed") => {
                seen = true;
                s.input_tokens = u64_at(&v, "/usage/input_tokens").or(s.input_tokens);
                s.output_tokens = u64_at(&v, "/usage/output_tokens").or(s.output_tokens);
                s.is_error = false;
            }
            Some("turn.failed" | "error") => {
                seen = true;
                s.is_error = true;
            }
            Some("item.completed") if str_at(&v, "/item/type") == Some("agent_message") => {
                seen = true;
                s.final_message = str_at(&v, "/item/text").map(str::to_string);
            }
            _ => {}
        }
    }
    seen.then_some(s)
}

/// Render one line of a Codex transcript readably; `None` for events not worth showing. A
/// line that is no JSON is shown escaped.
pub fn render_line(line: &str) -> Option<String> {
    let line = line.trim_end();
    if line.is_empty() {
        return None;
    }
    match serde_json::from_str::<Value>(line) {
        Ok(v) => render_event(&v),
        Err(_) => Some(sanitize(line)),
    }
}

fn short(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let clean = sanitize(&one_line);
    if clean.chars().count() > max {
        format!("{}…", clean.chars().take(max).collect::<String>())
    } else {
        clean
    }
}

fn item_line(item: &Value) -> Option<String> {
    match item.get("type").and_then(Value::as_str)? {
        "agent_message" => {
            let t = item
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim();
            (!t.is_empty()).then(|| format!("assistant: {}", sanitize(t)))
        }
        "command_execution" => {
            let cmd = item.get("command").and_then(Value::as_str).unwrap_or("?");
            let code = item.get("exit_code").and_then(Value::as_i64);
            let output = item
                .get("aggregated_output")
                .and_then(Value::as_str)
                .unwrap_or("");
            let mut text = format!("→ shell {}", short(cmd, 120));
            match code {
                Some(0) if output.trim().is_empty() => {}
                Some(0) => text.push_str(&format!("\n← {}", short(output, 120))),
                Some(c) => text.push_str(&format!("\n← error: exit {c} {}", short(output, 120))),
                None => {}
            }
            Some(text)
        }
        "file_change" => {
            let changes = item
                .get("changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{} {}",
                        short(c.get("kind").and_then(Value::as_str).unwrap_or("?"), 12),
                        short(c.get("path").and_then(Value::as_str).unwrap_or("?"), 80)
                    )
                })
                .collect::<Vec<_>>();
            Some(format!("→ edit {}", changes.join(", ")))
        }
        "mcp_tool_call" => Some(format!(
            "→ {}.{}",
            short(
                item.get("server").and_then(Value::as_str).unwrap_or("?"),
                40
            ),
            short(item.get("tool").and_then(Value::as_str).unwrap_or("?"), 40)
        )),
        "web_search" => Some(format!(
            "→ search {}",
            short(item.get("query").and_then(Value::as_str).unwrap_or(""), 80)
        )),
        "error" => Some(format!(
            "error: {}",
            short(
                item.get("message").and_then(Value::as_str).unwrap_or(""),
                200
            )
        )),
        _ => None,
    }
}

/// Render one parsed Codex event readably; `None` for events not worth showing (a command
/// is shown once, when it completed).
pub fn render_event(v: &Value) -> Option<String> {
    match v.get("type").and_then(Value::as_str)? {
        "thread.started" => Some(format!(
            "● session started (thread {})",
            short(str_at(v, "/thread_id").unwrap_or("?"), 64)
        )),
        "item.completed" => item_line(v.get("item")?),
        "turn.completed" => {
            let s = RunStats {
                input_tokens: u64_at(v, "/usage/input_tokens"),
                output_tokens: u64_at(v, "/usage/output_tokens"),
                ..RunStats::default()
            };
            Some(format!("■ done: {}", s.summary()))
        }
        "turn.failed" => Some(format!(
            "■ failed: {}",
            short(str_at(v, "/error/message").unwrap_or("unknown error"), 200)
        )),
        "error" => Some(format!(
            "error: {}",
            short(str_at(v, "/message").unwrap_or(""), 200)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As Codex 0.169.0 printed it against the fake Responses API (tests/it/fake_openai.rs),
    // with hostile bits added.
    const T: &str = r#"WARNING: proceeding, even though we could not create PATH aliases
{"type":"thread.started","thread_id":"01a2394e-94dc"}
{"type":"turn.started"}
{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":"/bin/sh -lc 'echo hi > hello.txt'","aggregated_output":"","exit_code":null,"status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_0","type":"command_execution","command":"/bin/sh -lc 'echo hi > hello.txt'","aggregated_output":"","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"false","aggregated_output":"boom\u001b[2J","exit_code":1,"status":"failed"}}
{"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"/workspace/a.txt","kind":"add"}],"status":"completed"}}
{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Done.\u001b]0;x\u0007"}}
{"type":"turn.completed","usage":{"input_tokens":200,"cached_input_tokens":20,"output_tokens":40,"reasoning_output_tokens":10}}
"#;

    #[test]
    fn stats_come_from_the_last_completed_turn() {
        let s = stats(T).unwrap();
        assert_eq!(s.input_tokens, Some(200));
        assert_eq!(s.output_tokens, Some(40));
        assert_eq!(s.final_message.as_deref(), Some("Done.\u{1b}]0;x\u{7}"));
        assert!(!s.is_error);
        assert_eq!(s.summary(), "200/40 tokens");
        let failed = format!(
            "{T}{}\n",
            r#"{"type":"turn.failed","error":{"message":"stream disconnected"}}"#
        );
        assert!(stats(&failed).unwrap().is_error);
        // Claude's transcript and plain text are not Codex's.
        assert!(stats("{\"type\":\"result\",\"num_turns\":1}\nhello").is_none());
    }

    #[test]
    fn rendering_shows_commands_edits_and_messages_escaped() {
        let lines: Vec<String> = T
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| render_event(&v))
            .collect();
        assert_eq!(lines[0], "● session started (thread 01a2394e-94dc)");
        assert_eq!(lines[1], "→ shell /bin/sh -lc 'echo hi > hello.txt'");
        assert_eq!(lines[2], "→ shell false\n← error: exit 1 boom\\x1b[2J");
        assert_eq!(lines[3], "→ edit add /workspace/a.txt");
        assert!(lines[4].starts_with("assistant: Done."), "{}", lines[4]);
        assert!(!lines[4].contains('\x1b') && !lines[4].contains('\x07'));
        assert_eq!(lines[5], "■ done: 200/40 tokens");
        assert_eq!(lines.len(), 6);
    }
}
