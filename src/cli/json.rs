//! The one shape of every `--json` output: an object whose first key is `schema` (the
//! version of the documented schema, [`SCHEMA`]), then the command's own keys. A task is
//! always named by the key `task`. The schema is documented in docs/json.md, which the
//! integration tests read to check every command's output against it.

use anyhow::Result;
use serde::Serialize;

/// The version of the JSON schema (docs/json.md). Raised when a key is removed or changes
/// meaning; adding a key does not raise it.
pub const SCHEMA: u32 = 1;

#[derive(Serialize)]
struct Doc<'a, T: Serialize + ?Sized> {
    schema: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// `body` (a struct or map) as a JSON document.
pub fn document<T: Serialize + ?Sized>(body: &T) -> Result<String> {
    Ok(serde_json::to_string_pretty(&Doc {
        schema: SCHEMA,
        body,
    })?)
}

/// Print `body` as a JSON document on stdout.
pub fn print<T: Serialize + ?Sized>(body: &T) -> Result<()> {
    super::out(document(body)?)
}

/// A serialized record's `name` key as `task`, for outputs that show a task's stored record
/// (whose storage format names it `name`).
pub fn name_as_task(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(mut map) => {
            if let Some(name) = map.remove("name") {
                map.insert("task".into(), name);
            }
            serde_json::Value::Object(map)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_comes_first() {
        #[derive(Serialize)]
        struct Body {
            task: &'static str,
        }
        let doc = document(&Body { task: "t" }).unwrap();
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["task"], "t");
        assert!(doc.find("\"schema\"").unwrap() < doc.find("\"task\"").unwrap());
        let renamed = name_as_task(serde_json::json!({"name": "x", "agent": "a"}));
        assert_eq!(renamed, serde_json::json!({"task": "x", "agent": "a"}));
    }
}
