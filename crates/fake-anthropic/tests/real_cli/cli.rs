//! Running the real CLI against the fake: where it is, a sandbox it may write to, the command line, and a run
//! collected line by line.

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_anthropic::FakeAnthropic;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

pub const MODEL: &str = "claude-sonnet-4-6";
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// The CLI to run, or `None` (after saying why) when the test should pass without it.
pub fn claude_bin() -> Option<PathBuf> {
    let required = std::env::var("CLAUDE_K8S_REQUIRE_STAGE").is_ok_and(|v| v == "1");
    let candidate = match std::env::var_os("CLAUDE_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("CLAUDE_K8S_STAGE_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/cache/claude-k8s-stage"));
            cache.join("claude-code/bin/claude")
        }
    };
    if candidate.is_file() {
        return Some(candidate);
    }
    let msg = format!(
        "the real Claude Code CLI is missing at {} (set CLAUDE_BIN or run test/stage/claude-cli.sh install)",
        candidate.display()
    );
    if required {
        panic!("CLAUDE_K8S_REQUIRE_STAGE=1 but {msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// A temporary directory tree (HOME and a working directory) owned by the user that runs the CLI.
pub struct Sandbox {
    pub root: PathBuf,
    pub home: PathBuf,
    pub work: PathBuf,
    uid: Option<u32>,
}

impl Sandbox {
    pub fn new(name: &str) -> Sandbox {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "fake-anthropic-cli-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let home = root.join("home");
        let work = root.join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        // SAFETY: geteuid has no preconditions.
        let uid = (unsafe { geteuid() } == 0).then(|| {
            std::env::var("CLAUDE_TEST_UID")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000)
        });
        if let Some(uid) = uid {
            for d in [&root, &home, &work] {
                chown(d, Some(uid), Some(uid)).unwrap();
            }
        }
        Sandbox {
            root,
            home,
            work,
            uid,
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

/// One finished CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub lines: Vec<Value>,
    #[allow(dead_code)] // shown by Debug in failure messages
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn of_type<'a>(&'a self, t: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.lines.iter().filter(move |l| l["type"] == t)
    }

    pub fn init(&self) -> &Value {
        self.lines
            .iter()
            .find(|l| l["type"] == "system" && l["subtype"] == "init")
            .unwrap_or_else(|| panic!("no system/init line: {self:#?}"))
    }

    pub fn result(&self) -> &Value {
        self.of_type("result")
            .last()
            .unwrap_or_else(|| panic!("no result line: {self:#?}"))
    }

    pub fn session_id(&self) -> String {
        self.init()["session_id"].as_str().unwrap().to_string()
    }

    pub fn assistant_texts(&self) -> Vec<String> {
        self.of_type("assistant")
            .flat_map(|l| {
                l["message"]["content"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|b| b["type"] == "text")
            .map(|b| b["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// A successful result with the usage and cost that the CLI computes from the API usage.
    pub fn assert_success(&self, expected_text: &str) {
        assert_eq!(self.code, Some(0), "{self:#?}");
        let r = self.result();
        assert_eq!(r["subtype"], "success", "{r:#}");
        assert_eq!(r["is_error"], false, "{r:#}");
        assert_eq!(r["result"], expected_text, "{r:#}");
        assert!(r["total_cost_usd"].as_f64().unwrap() > 0.0, "{r:#}");
        let usage = &r["usage"];
        for k in [
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ] {
            assert!(usage[k].is_u64(), "usage.{k}: {r:#}");
        }
        assert!(usage["output_tokens"].as_u64().unwrap() > 0, "{r:#}");
        let mu = &r["modelUsage"][MODEL];
        assert!(mu["costUSD"].as_f64().unwrap() > 0.0, "{r:#}");
        assert!(
            mu["cacheCreationInputTokens"].as_u64().unwrap()
                + mu["cacheReadInputTokens"].as_u64().unwrap()
                > 1000,
            "{r:#}"
        );
        assert_eq!(self.init()["model"], MODEL);
    }
}

/// Builds the CLI command: `--print --output-format stream-json --verbose` against the fake.
pub fn command(
    bin: &Path,
    fake: &FakeAnthropic,
    sb: &Sandbox,
    env: &[(&str, &str)],
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &sb.home)
        .env("ANTHROPIC_BASE_URL", fake.url())
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args([
        "--print",
        "--output-format",
        "stream-json",
        "--verbose",
        "--dangerously-skip-permissions",
        "--model",
        MODEL,
    ])
    .args(args)
    .current_dir(&sb.work)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    if let Some(uid) = sb.uid {
        cmd.uid(uid).gid(uid);
    }
    cmd
}

/// A CLI process whose stdout lines are collected as they arrive.
pub struct Running {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: tokio::task::JoinHandle<()>,
    started: Instant,
}

impl Running {
    pub async fn spawn(mut cmd: Command, prompt: &str) -> Running {
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn claude");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(prompt.as_bytes()).await.unwrap();
        drop(stdin);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        let reader = tokio::spawn(async move {
            let mut rd = BufReader::new(out).lines();
            while let Ok(Some(line)) = rd.next_line().await {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                sink.lock().unwrap().push(v);
            }
        });
        Running {
            child,
            lines,
            reader,
            started,
        }
    }

    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    pub async fn finish(mut self) -> Run {
        let mut stderr = String::new();
        let mut err = self.child.stderr.take().unwrap();
        let status = tokio::time::timeout(RUN_TIMEOUT, async {
            let _ = err.read_to_string(&mut stderr).await;
            self.child.wait().await
        })
        .await
        .expect("claude finished in time")
        .unwrap();
        let lines = self.lines.clone();
        self.reader.await.unwrap();
        Run {
            code: status.code(),
            lines: lines.lock().unwrap().clone(),
            stderr,
            elapsed: self.started.elapsed(),
        }
    }
}

pub async fn run(
    bin: &Path,
    fake: &FakeAnthropic,
    sb: &Sandbox,
    prompt: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Run {
    Running::spawn(command(bin, fake, sb, env, args), prompt)
        .await
        .finish()
        .await
}

/// Every request the CLI made hit a known route (a new CLI version may call new paths).
pub fn assert_no_unknown_paths(fake: &FakeAnthropic) {
    let unknown = fake.unknown_requests();
    assert!(
        unknown.is_empty(),
        "the CLI called paths the fake does not know: {:?}",
        unknown
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
}
