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

use crate::confined::SafeDir;
use crate::run::prepare::pod_facts::DATA_MOUNT_PATH;
use crate::run::prepare::view::View;
use crate::serve::protocol::ExecuteParams;

/// `/paperclip/claude-k8s/sessions`: on the shared volume, so every Paperclip replica sees the same records.
pub fn dir() -> PathBuf {
    Path::new(DATA_MOUNT_PATH)
        .join("claude-k8s")
        .join("sessions")
}

/// The record's file name for a Claude session id; `None` for anything that is not a UUID, as Claude's session
/// ids are (the id comes from the agent's own output: no path tricks, and no name like `config` either).
fn file_name(session_id: &str) -> Option<String> {
    crate::run::plan::invocation::is_uuid(session_id).then(|| format!("{session_id}.json"))
}

/// The record's file for a Claude session id; `None` for anything that is not a UUID.
pub fn file(dir: &Path, session_id: &str) -> Option<PathBuf> {
    Some(dir.join(file_name(session_id)?))
}

/// A record is a few hundred bytes.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

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
/// The directory and the file are opened without following symlinks: an agent can write the volume, but cannot
/// make the server read (or block on) anything else through a planted link.
pub fn read(dir: &Path, session_id: &str) -> Option<Map<String, Value>> {
    let name = file_name(session_id)?;
    let bytes = SafeDir::open(dir, false)
        .ok()?
        .read(&name, MAX_RECORD_BYTES)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
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
    // Written under an unpredictable name created exclusively, then renamed within a directory opened without
    // following symlinks: a planted link (at the name or on the way) is never written through.
    let write = || -> Result<(), crate::confined::FileError> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        SafeDir::open(dir, true)?.replace_file(
            &name,
            Value::Object(params.clone()).to_string().as_bytes(),
            0o644,
        )
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

/// Why a session saved before agents had their own Claude home does not resume: its transcript is in the seed's
/// shared `/paperclip/.claude`, which a Job pod no longer sees, and not in the agent's own home. `None` when the
/// session is in the agent's home, nowhere (Claude then says so and the run retries fresh), or the pod sees the
/// whole volume anyway. Only looks at names: a transcript is never copied from the shared home, which every agent
/// could write to.
pub fn left_in_the_shared_home(view: &View, session_id: &str) -> Option<String> {
    if view.whole || !crate::run::plan::invocation::is_uuid(session_id) {
        return None;
    }
    let transcript = format!("{session_id}.jsonl");
    let has = |home: &Path| {
        std::fs::read_dir(home.join(".claude").join("projects"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|project| project.path().join(&transcript).exists())
    };
    let shared = Path::new(DATA_MOUNT_PATH);
    (has(shared) && !has(Path::new(&view.home))).then(|| {
        format!(
            "session `{session_id}` was saved in the Claude home shared by every agent ({DATA_MOUNT_PATH}/.claude), \
             which Job pods no longer see: each agent now has its own ({}); starting a fresh session",
            view.home
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
    fn planted_symlinks_are_never_followed() {
        let base =
            std::env::temp_dir().join(format!("claude-k8s-sessions-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let victim = base.join("instance");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("config.json"), "precious").unwrap();
        let result = json!({"sessionParams": {"sessionId": ID, "cwd": "/w"}});
        // The record's name planted as a link to a file of the attacker's choice: the link is replaced.
        let d = base.join("sessions");
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(victim.join("config.json"), d.join(format!("{ID}.json")))
            .unwrap();
        assert!(read(&d, ID).is_none(), "a record behind a link is not read");
        save(&d, &result).unwrap();
        assert_eq!(
            std::fs::read_to_string(victim.join("config.json")).unwrap(),
            "precious"
        );
        assert_eq!(read(&d, ID).unwrap()["cwd"], "/w");
        // The directory itself swapped for a link: nothing is written there.
        let linked = base.join("linked-sessions");
        std::os::unix::fs::symlink(&victim, &linked).unwrap();
        let err = save(&linked, &result).unwrap_err();
        assert!(err.contains("symlink"), "{err}");
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1);
        // A FIFO where the record should be: read returns at once.
        let fifo_id = "5b1b7e0e-0000-4c4e-9a57-0c0d1e2f3a4b";
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join(format!("{fifo_id}.json")).as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(read(&d, fifo_id).is_none());
        // Ids that are not UUIDs name no file (`config` would be `config.json`).
        assert!(file(&d, "config").is_none());
        std::fs::remove_dir_all(base).unwrap();
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
