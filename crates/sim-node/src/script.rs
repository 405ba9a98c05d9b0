//! What a simulated container does: which recorded transcript it prints, how fast, and how it ends. Chosen per
//! pod by the played container's environment (the adapter's `env` config sets it). Pure: no clock, no I/O.
//!
//! A container's whole life follows from the moment it started: line `i` is written at
//! `started + start + i × line gap`, and the container exits `exit after` the last line, unless it is stopped
//! first. So every reader of its log, at any time, sees the same lines with the same timestamps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// The transcript to print: a file stem of the transcripts directory (e.g. `bash-tool-use`).
pub const ENV_TRANSCRIPT: &str = "SIM_TRANSCRIPT";
/// Milliseconds from the container's start to its first line.
pub const ENV_START_MS: &str = "SIM_START_MS";
/// Milliseconds between two lines.
pub const ENV_LINE_MS: &str = "SIM_LINE_MS";
/// Milliseconds from the last line to the container's exit.
pub const ENV_EXIT_MS: &str = "SIM_EXIT_MS";
/// The exit code (default: 0 when the transcript's `result` line says `is_error: false`, else 1).
pub const ENV_EXIT_CODE: &str = "SIM_EXIT_CODE";
/// `exit` (default: exit 143 at once on SIGTERM, like claude) or `ignore` (run on until SIGKILL: 137).
pub const ENV_ON_SIGTERM: &str = "SIM_ON_SIGTERM";

/// The exit code of a container whose script cannot be played (its only log line says why).
pub const BAD_SCRIPT_EXIT: i32 = 2;

/// One recorded stream-json transcript.
#[derive(Debug, PartialEq)]
pub struct Transcript {
    pub name: String,
    pub lines: Vec<String>,
    /// What claude exited with when it printed this: 0 after a successful `result`, 1 otherwise.
    pub exit_code: i32,
}

impl Transcript {
    pub fn parse(name: &str, text: &str) -> Self {
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let result = lines.iter().rev().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["type"] == "result").then_some(v)
        });
        let exit_code = match result {
            Some(r) if r["is_error"] == false => 0,
            _ => 1,
        };
        Self {
            name: name.to_owned(),
            lines,
            exit_code,
        }
    }
}

/// Every transcript the node can play, by name.
#[derive(Debug, Default)]
pub struct Transcripts(pub BTreeMap<String, Arc<Transcript>>);

impl Transcripts {
    /// Each `*.jsonl` file of `dir`, named by its file stem.
    pub fn load(dir: &std::path::Path) -> anyhow::Result<Self> {
        let mut all = BTreeMap::new();
        for entry in std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read transcripts dir {}: {e}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            all.insert(name.clone(), Arc::new(Transcript::parse(&name, &text)));
        }
        anyhow::ensure!(
            !all.is_empty(),
            "no *.jsonl transcripts in {}",
            dir.display()
        );
        Ok(Self(all))
    }

    fn names(&self) -> String {
        self.0.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The node-wide defaults, used where a pod's environment says nothing.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub transcript: String,
    pub start: Duration,
    pub line_gap: Duration,
    pub exit_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnSigterm {
    Exit,
    Ignore,
}

/// How long claude takes to exit after SIGTERM.
const SIGTERM_EXIT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct Script {
    pub transcript: Arc<Transcript>,
    pub start: Duration,
    pub line_gap: Duration,
    pub exit_after: Duration,
    pub exit_code: i32,
    pub on_sigterm: OnSigterm,
}

/// How and when the container ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct End {
    pub at: Timestamp,
    pub exit_code: i32,
}

impl End {
    /// The kubelet's reason for a terminated container.
    pub fn reason(&self) -> &'static str {
        if self.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

impl Script {
    /// The script a container's environment asks for. A bad one still plays: the container prints what is wrong
    /// as its only line and exits with [`BAD_SCRIPT_EXIT`], so the run that asked for it fails with the reason.
    pub fn from_env(env: &BTreeMap<String, String>, all: &Transcripts, d: &Defaults) -> Self {
        match Self::try_from_env(env, all, d) {
            Ok(s) => s,
            Err(problem) => Self {
                transcript: Arc::new(Transcript {
                    name: "invalid".into(),
                    lines: vec![format!("sim-node: {problem}")],
                    exit_code: BAD_SCRIPT_EXIT,
                }),
                start: Duration::ZERO,
                line_gap: Duration::ZERO,
                exit_after: Duration::ZERO,
                exit_code: BAD_SCRIPT_EXIT,
                on_sigterm: OnSigterm::Exit,
            },
        }
    }

    fn try_from_env(
        env: &BTreeMap<String, String>,
        all: &Transcripts,
        d: &Defaults,
    ) -> Result<Self, String> {
        let name = env.get(ENV_TRANSCRIPT).unwrap_or(&d.transcript);
        let transcript = all.0.get(name.as_str()).cloned().ok_or_else(|| {
            format!(
                "no transcript named {name:?} ({ENV_TRANSCRIPT}); this node has: {}",
                all.names()
            )
        })?;
        let ms = |key: &str, default: Duration| -> Result<Duration, String> {
            match env.get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| format!("{key}={v:?} is not a whole number of milliseconds")),
            }
        };
        let exit_code = match env.get(ENV_EXIT_CODE) {
            None => transcript.exit_code,
            Some(v) => v
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|c| (0..=255).contains(c))
                .ok_or_else(|| format!("{ENV_EXIT_CODE}={v:?} is not an exit code (0-255)"))?,
        };
        let on_sigterm = match env.get(ENV_ON_SIGTERM).map(String::as_str) {
            None | Some("exit") => OnSigterm::Exit,
            Some("ignore") => OnSigterm::Ignore,
            Some(v) => return Err(format!("{ENV_ON_SIGTERM}={v:?}: expected exit or ignore")),
        };
        Ok(Self {
            transcript,
            start: ms(ENV_START_MS, d.start)?,
            line_gap: ms(ENV_LINE_MS, d.line_gap)?,
            exit_after: ms(ENV_EXIT_MS, d.exit_after)?,
            exit_code,
            on_sigterm,
        })
    }

    pub fn len(&self) -> usize {
        self.transcript.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transcript.lines.is_empty()
    }

    /// When line `i` is written, for a container that started at `started`.
    pub fn line_at(&self, started: Timestamp, i: usize) -> Timestamp {
        let offset = self.start + self.line_gap * i as u32;
        add(started, offset)
    }

    /// The end of a container nobody stops.
    pub fn natural_end(&self, started: Timestamp) -> End {
        let last = match self.len() {
            0 => add(started, self.start),
            n => self.line_at(started, n - 1),
        };
        End {
            at: add(last, self.exit_after),
            exit_code: self.exit_code,
        }
    }

    /// The end of a container that gets SIGTERM at `sigterm` and SIGKILL at `kill` (the pod's deletion
    /// deadline), unless it ends by itself before.
    pub fn stopped_end(&self, started: Timestamp, sigterm: Timestamp, kill: Timestamp) -> End {
        let natural = self.natural_end(started);
        let stopped = match self.on_sigterm {
            OnSigterm::Exit => End {
                at: add(sigterm, SIGTERM_EXIT).min(kill.max(sigterm)),
                exit_code: 143,
            },
            OnSigterm::Ignore => End {
                at: kill.max(sigterm),
                exit_code: 137,
            },
        };
        if natural.at <= stopped.at {
            natural
        } else {
            stopped
        }
    }

    /// How many lines a container that ends at `end` has written: those due at or before its end.
    pub fn lines_until(&self, started: Timestamp, end: Timestamp) -> usize {
        (0..self.len())
            .take_while(|&i| self.line_at(started, i) <= end)
            .count()
    }
}

/// How long until `at` on the wall clock (zero if it has passed).
pub fn until(at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default()
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .expect("a saturating add of a positive duration cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcripts() -> Transcripts {
        let mut t = BTreeMap::new();
        t.insert(
            "ok".to_owned(),
            Arc::new(Transcript::parse(
                "ok",
                "{\"type\":\"system\"}\n\n{\"type\":\"assistant\"}\n{\"type\":\"result\",\"is_error\":false}\n",
            )),
        );
        t.insert(
            "bad".to_owned(),
            Arc::new(Transcript::parse(
                "bad",
                "{\"type\":\"result\",\"is_error\":true}",
            )),
        );
        Transcripts(t)
    }

    fn defaults() -> Defaults {
        Defaults {
            transcript: "ok".into(),
            start: Duration::from_millis(500),
            line_gap: Duration::from_millis(100),
            exit_after: Duration::from_millis(200),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_exit_code_follows_the_result_line() {
        let all = transcripts();
        assert_eq!(all.0["ok"].lines.len(), 3, "blank lines are not lines");
        assert_eq!(all.0["ok"].exit_code, 0);
        assert_eq!(all.0["bad"].exit_code, 1);
        assert_eq!(Transcript::parse("x", "{\"type\":\"system\"}").exit_code, 1);
        let s = Script::from_env(&env(&[(ENV_EXIT_CODE, "7")]), &all, &defaults());
        assert_eq!(s.exit_code, 7);
    }

    #[test]
    fn lines_are_due_at_fixed_offsets_from_the_start() {
        let s = Script::from_env(&env(&[(ENV_LINE_MS, "1000")]), &transcripts(), &defaults());
        let t0 = ts("2026-01-01T00:00:00Z");
        assert_eq!(s.line_at(t0, 0), ts("2026-01-01T00:00:00.5Z"));
        assert_eq!(s.line_at(t0, 2), ts("2026-01-01T00:00:02.5Z"));
        let end = s.natural_end(t0);
        assert_eq!(end.at, ts("2026-01-01T00:00:02.7Z"));
        assert_eq!((end.exit_code, end.reason()), (0, "Completed"));
        assert_eq!(s.lines_until(t0, end.at), 3);
        assert_eq!(s.lines_until(t0, ts("2026-01-01T00:00:01.5Z")), 2);
        assert_eq!(s.lines_until(t0, ts("2026-01-01T00:00:00.4Z")), 0);
    }

    #[test]
    fn a_stop_ends_the_container_unless_it_already_ended() {
        let all = transcripts();
        let t0 = ts("2026-01-01T00:00:00Z");
        let s = Script::from_env(&env(&[(ENV_LINE_MS, "1000")]), &all, &defaults());
        let term = ts("2026-01-01T00:00:01Z");
        let kill = ts("2026-01-01T00:00:31Z");
        let end = s.stopped_end(t0, term, kill);
        assert_eq!(end.exit_code, 143);
        assert_eq!(end.at, ts("2026-01-01T00:00:01.05Z"));
        assert_eq!(end.reason(), "Error");
        assert_eq!(s.lines_until(t0, end.at), 1);
        // A SIGTERM after the natural end changes nothing.
        let late = s.stopped_end(t0, ts("2026-01-01T00:00:09Z"), kill);
        assert_eq!(late, s.natural_end(t0));
        // An agent that ignores SIGTERM runs until the grace period is over.
        let stubborn = Script::from_env(
            &env(&[(ENV_ON_SIGTERM, "ignore"), (ENV_LINE_MS, "60000")]),
            &all,
            &defaults(),
        );
        let end = stubborn.stopped_end(t0, term, kill);
        assert_eq!((end.at, end.exit_code), (kill, 137));
        // A grace of zero: the kill comes with the SIGTERM.
        let end = s.stopped_end(t0, term, term);
        assert_eq!((end.at, end.exit_code), (term, 143));
    }

    #[test]
    fn a_bad_script_plays_as_a_failing_container_that_says_why() {
        let all = transcripts();
        for (pairs, says) in [
            (
                vec![(ENV_TRANSCRIPT, "nope")],
                "no transcript named \"nope\"",
            ),
            (vec![(ENV_LINE_MS, "fast")], "SIM_LINE_MS=\"fast\""),
            (vec![(ENV_EXIT_CODE, "300")], "SIM_EXIT_CODE=\"300\""),
            (vec![(ENV_ON_SIGTERM, "maybe")], "expected exit or ignore"),
        ] {
            let s = Script::from_env(&env(&pairs), &all, &defaults());
            assert_eq!(s.exit_code, BAD_SCRIPT_EXIT);
            assert_eq!(s.len(), 1);
            assert!(
                s.transcript.lines[0].contains(says),
                "{:?}",
                s.transcript.lines
            );
        }
        let s = Script::from_env(&env(&[(ENV_TRANSCRIPT, "nope")]), &all, &defaults());
        assert!(s.transcript.lines[0].contains("this node has: bad, ok"));
    }
}
