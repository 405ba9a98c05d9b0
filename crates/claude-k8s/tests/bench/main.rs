//! `make bench`: how fast and how far one serve process goes, measured on the real stage (issue 8). Writes
//! `bench/results.json` and `BENCHMARKS.md`. Not part of `make test` (it takes about 15 minutes); `BENCH_QUICK=1`
//! is a smoke of it (3 runs per figure, short runs, N up to 10) that writes to target/bench instead.
//! BENCHMARKS.md also renders bench/paperclip.json, the heartbeats through Paperclip that
//! test/stage/bench/paperclip-bench.mjs measures (test/stage/run-bench.sh runs both), and keeps the part written
//! by hand; `report_only` renders it again from the results without measuring anything.
//!
//! Built with `--release`, so the serve process measured is the release binary. Every figure is taken from
//! outside the adapter: the bench's own watch on the pods, the arrival of messages on the serve's stdout, the
//! API server's audit log, and /proc for the serve process.
//!
//! A test binary of its own, so that `--ignored` on the stage tests never runs it (it rewrites files of the
//! repository); it shares the stage tests' support.

mod latency;
mod report;
mod requests;
mod scale;
mod start;
mod through_paperclip;
// The stage tests' support, of which the bench uses a part.
#[allow(dead_code, unused_imports)]
#[path = "../stage/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use latency::{completion_and_start, log_latency};
use report::{by_hand, render};
use requests::api_requests;
use support::{repo_root, stage_env};

fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1")
}

fn git(args: &[&str]) -> String {
    std::process::Command::new("git")
        .args(args)
        .current_dir(repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = proc_meminfo_gib();
    format!("{cores} cores ({cpu}), {mem} GiB RAM")
}

fn proc_meminfo_gib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kib| kib / 1024 / 1024)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark on the real stage: make bench"]
async fn bench() {
    let q = quick();
    let started = Instant::now();
    let (completion, start) = completion_and_start(if q { 3 } else { 20 }).await;
    eprintln!(
        "[bench] completion and start done after {:.0}s",
        started.elapsed().as_secs_f64()
    );
    let log = log_latency(if q { 100 } else { 2000 }).await;
    eprintln!(
        "[bench] log latency done after {:.0}s",
        started.elapsed().as_secs_f64()
    );
    let requests = api_requests(if q { &[5, 10] } else { &[10, 60, 300] }).await;
    eprintln!(
        "[bench] API requests done after {:.0}s",
        started.elapsed().as_secs_f64()
    );
    let scale = scale::scale(if q { &[1, 10] } else { &[1, 10, 50, 100] }).await;
    eprintln!(
        "[bench] scale done after {:.0}s",
        started.elapsed().as_secs_f64()
    );
    let results = json!({
        "date": jiff::Timestamp::now().to_string(),
        "machine": machine(),
        "commit": git(&["rev-parse", "--short", "HEAD"]),
        "dirty": !git(&["status", "--porcelain"]).is_empty(),
        "quick": q,
        "kubernetes": stage_env("K8S_VERSION"),
        "claude": stage_env("CLAUDE_VERSION"),
        "completion": completion,
        "start": start,
        "log_latency": log,
        "api_requests_per_run": requests,
        "scale": scale,
    });
    let dir = results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    eprintln!("[bench] wrote {}", dir.join("results.json").display());
    write_report();
}

/// Where the results go: bench/, or target/bench/ for the `BENCH_QUICK=1` smoke.
fn results_dir() -> PathBuf {
    if quick() {
        repo_root().join("target/bench")
    } else {
        repo_root().join("bench")
    }
}

/// The JSON in `path`, or `None` when there is no such file; a file that is not JSON fails the bench, naming it.
fn read_results(path: &Path) -> Option<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// BENCHMARKS.md (target/bench/BENCHMARKS.md for the smoke) rendered from the results last written, whichever
/// part of the bench wrote them, keeping the part of the existing file written by hand.
fn write_report() {
    let dir = results_dir();
    let md = if quick() {
        dir.join("BENCHMARKS.md")
    } else {
        repo_root().join("BENCHMARKS.md")
    };
    let results = read_results(&dir.join("results.json")).unwrap_or(Value::Null);
    let paperclip = read_results(&dir.join("paperclip.json"));
    let existing = std::fs::read_to_string(&md).unwrap_or_default();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        &md,
        render(&results, paperclip.as_ref(), by_hand(&existing)),
    )
    .unwrap();
    eprintln!("[bench] wrote {}", md.display());
}

/// BENCHMARKS.md again from the results already written, measuring nothing (`BENCH_ONLY=report
/// test/stage/run-bench.sh`; `BENCH_QUICK=1` for the smoke's files).
#[test]
#[ignore = "rewrites BENCHMARKS.md: make bench-report"]
fn report_only() {
    write_report();
}

/// The lengths of `BENCH_LENGTHS` (seconds, comma-separated), else `default`.
fn lengths(default: &[u64]) -> Vec<u64> {
    std::env::var("BENCH_LENGTHS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// One figure alone, printed and not written (to measure a change without the whole bench):
/// `cargo test -p claude-k8s --test bench -- --ignored --nocapture requests_only` (`BENCH_LENGTHS=10,60`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark on the real stage"]
async fn requests_only() {
    let requests = api_requests(&lengths(&[10, 60])).await;
    println!("{}", serde_json::to_string_pretty(&requests).unwrap());
}

/// The completion and start figures alone, printed (`BENCH_RUNS`, default 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark on the real stage"]
async fn completion_only() {
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let (completion, start) = completion_and_start(runs).await;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"completion": completion, "start": start})).unwrap()
    );
}
