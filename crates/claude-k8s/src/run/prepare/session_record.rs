//! What a session was run with (cwd, prompt bundle key, MCP identity), kept next to Claude's own session store on
//! the shared volume, for the runs where Paperclip hands back only a bare session id.
//!
//! Why: Paperclip 2026.916.1 passes `sessionParams` back for task runs only; an agent-level heartbeat gets the bare
//! `runtime.sessionId`. With nothing to compare, a changed instructions file would never reach the agent (Claude
//! reads `--append-system-prompt-file` on fresh sessions only) while its session keeps resuming. claude_local
//! avoids that by never resuming such runs when MCP servers exist; this record lets a bare id be gated exactly like
//! full `sessionParams` instead, so agent-level heartbeats both resume and pick up changes.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::run::prepare::pod_facts::DATA_MOUNT_PATH;
use crate::serve::protocol::ExecuteParams;

/// `/paperclip/claude-k8s/sessions`: on the shared volume, so every Paperclip replica sees the same records.
pub fn dir() -> PathBuf {
    Path::new(DATA_MOUNT_PATH)
        .join("claude-k8s")
        .join("sessions")
}

/// The record's file for a Claude session id; `None` for anything that is not a plain id (no path tricks).
pub fn file(dir: &Path, session_id: &str) -> Option<PathBuf> {
    let ok = !session_id.is_empty()
        && session_id.len() <= 64
        && session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then(|| dir.join(format!("{session_id}.json")))
}

/// Fills `runtime.sessionParams` from the record when Paperclip sent only a bare session id. Pure given `read`.
pub fn with_saved_params(
    mut params: ExecuteParams,
    read: impl Fn(&str) -> Option<Map<String, Value>>,
) -> ExecuteParams {
    let bare = params.runtime.session_params.is_none();
    if let (true, Some(id)) = (bare, params.runtime.session_id.clone())
        && let Some(saved) = read(id.trim())
        && saved.get("sessionId").and_then(Value::as_str) == Some(id.trim())
    {
        params.runtime.session_params = Some(saved);
    }
    params
}

/// Reads a record (a missing or unreadable one is simply absent).
pub fn read(dir: &Path, session_id: &str) -> Option<Map<String, Value>> {
    let text = std::fs::read_to_string(file(dir, session_id)?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Saves the `sessionParams` of a result, if it has any. An error is for the run log only: without the record a
/// bare id still resumes, just without the gating.
pub fn save(dir: &Path, result: &Value) -> Result<(), String> {
    let Some(params) = result.get("sessionParams").and_then(Value::as_object) else {
        return Ok(());
    };
    let Some(path) = params
        .get("sessionId")
        .and_then(Value::as_str)
        .and_then(|id| file(dir, id))
    else {
        return Ok(());
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
        std::fs::write(&tmp, Value::Object(params.clone()).to_string())?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        format!(
            "cannot save the session record {}: {e}; the next agent-level heartbeat resumes this session without \
             checking its instructions and tools. Hint: make {} writable for the Paperclip server's user",
            path.display(),
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "5b1b7e0e-8f2a-4c4e-9a57-0c0d1e2f3a4b";

    fn params(runtime: Value) -> ExecuteParams {
        serde_json::from_value(json!({"runId": "r", "agent": {"id": "a"}, "runtime": runtime}))
            .unwrap()
    }

    #[test]
    fn file_names_are_plain_ids_only() {
        let d = Path::new("/d");
        assert_eq!(file(d, ID), Some(d.join(format!("{ID}.json"))));
        for bad in ["", "../etc/passwd", "a/b", "x.json"] {
            assert_eq!(file(d, bad), None, "{bad}");
        }
    }

    #[test]
    fn a_bare_id_gets_the_saved_params_and_full_params_are_kept() {
        let saved = json!({"sessionId": ID, "cwd": "/w", "promptBundleKey": "k1"});
        let read = |id: &str| (id == ID).then(|| saved.as_object().unwrap().clone());
        let p = with_saved_params(params(json!({"sessionId": ID})), read);
        assert_eq!(p.runtime.session_params.unwrap()["promptBundleKey"], "k1");
        // Paperclip's own sessionParams win.
        let own = json!({"sessionId": ID, "cwd": "/other"});
        let p = with_saved_params(params(json!({"sessionId": ID, "sessionParams": own})), read);
        assert_eq!(p.runtime.session_params.unwrap()["cwd"], "/other");
        // No record, or a record of another session: unchanged.
        let p = with_saved_params(params(json!({"sessionId": "nope"})), read);
        assert!(p.runtime.session_params.is_none());
        let wrong = |_: &str| json!({"sessionId": "other"}).as_object().cloned();
        assert!(
            with_saved_params(params(json!({"sessionId": ID})), wrong)
                .runtime
                .session_params
                .is_none()
        );
    }

    #[test]
    fn save_then_read_round_trips() {
        let d = std::env::temp_dir().join(format!("claude-k8s-sessions-{}", std::process::id()));
        save(
            &d,
            &json!({"sessionId": ID, "sessionParams": {"sessionId": ID, "cwd": "/w", "mcpServerIdentity": "[]"}}),
        )
        .unwrap();
        save(&d, &json!({"exitCode": 1})).unwrap(); // nothing to save
        assert_eq!(read(&d, ID).unwrap()["mcpServerIdentity"], "[]");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        assert!(read(&d, "5b1b7e0e-0000-4c4e-9a57-0c0d1e2f3a4b").is_none());
        std::fs::remove_dir_all(d).unwrap();
        let err = save(
            Path::new("/proc/claude-k8s-no"),
            &json!({"sessionParams": {"sessionId": ID}}),
        )
        .unwrap_err();
        assert!(err.contains("writable"), "{err}");
    }
}
