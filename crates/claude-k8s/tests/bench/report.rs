//! The bench's figures as statistics, and BENCHMARKS.md rendered from bench/results.json (the figures measured
//! in process), bench/paperclip.json (through Paperclip) and the part of the file written by hand.

use serde_json::{Value, json};

use crate::through_paperclip;

/// The line from which BENCHMARKS.md is written by hand: rendering keeps it and everything after it.
pub const BY_HAND_MARKER: &str =
    "<!-- Written by hand from here on: make bench keeps this part as it is. -->";

/// The part of an existing BENCHMARKS.md written by hand (from [`BY_HAND_MARKER`] to the end), if it has one.
pub fn by_hand(existing: &str) -> Option<&str> {
    existing.find(BY_HAND_MARKER).map(|at| &existing[at..])
}

/// p50/p95/max of a sample, in the sample's unit.
pub fn stats(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!({"runs": 0});
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    json!({"n": v.len(), "p50": round3(pick(0.5)), "p95": round3(pick(0.95)), "max": round3(*v.last().unwrap())})
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn row(name: &str, s: &Value, unit: &str, target: &str) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {target} |\n",
        s["p50"]
            .as_f64()
            .map(|v| format!("{v} {unit}"))
            .unwrap_or("–".into()),
        s["p95"]
            .as_f64()
            .map(|v| format!("{v} {unit}"))
            .unwrap_or("–".into()),
        s["max"]
            .as_f64()
            .map(|v| format!("{v} {unit}"))
            .unwrap_or("–".into()),
        s["n"].as_u64().unwrap_or(0),
    )
}

/// BENCHMARKS.md: the in-process figures of `r` (bench/results.json; `Value::Null` when they were not measured),
/// the section through Paperclip, then the part written by hand, kept as it was.
pub fn render(r: &Value, paperclip: Option<&Value>, by_hand: Option<&str>) -> String {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(
        "Written by `make bench` (crates/claude-k8s/tests/bench) on the real stage: Kubernetes ",
    );
    md.push_str(&format!(
        "{} (apiserver, controller-manager, scheduler, kubelet on dockerd), Claude Code {}, one release-built \
         `claude-k8s serve`.\n\n",
        r["kubernetes"].as_str().unwrap_or("?"),
        r["claude"].as_str().unwrap_or("?")
    ));
    md.push_str(&format!(
        "- Date: {}\n- Machine: {}\n- Commit: {}{}\n\n",
        r["date"].as_str().unwrap_or("?"),
        r["machine"].as_str().unwrap_or("?"),
        r["commit"].as_str().unwrap_or("?"),
        if r["dirty"] == true {
            " (with uncommitted changes)"
        } else {
            ""
        }
    ));
    if r.is_null() {
        md.push_str(
            "The figures measured in process (the sections up to Scale) are not measured yet here: \
             `BENCH_ONLY=inside test/stage/run-bench.sh` (or `make bench`) writes them.\n\n",
        );
    }
    md.push_str("## Latency\n\n| figure | p50 | p95 | max | runs/lines | target |\n|---|---|---|---|---|---|\n");
    let c = &r["completion"];
    md.push_str(&row(
        "Completion: watch sees claude terminated → `execute()` resolves",
        &c["after_watch_sees_termination_s"],
        "s",
        "≤ 0.2 s p50",
    ));
    md.push_str(&row(
        "Completion: container `finishedAt` (whole seconds) → `execute()` resolves",
        &c["after_finished_at_s"],
        "s",
        "–",
    ));
    md.push_str(&row(
        "Completion: the fake API receives claude's final request → `execute()` resolves",
        &c["after_final_request_s"],
        "s",
        "≤ 0.3 s p50 (from the final reply)",
    ));
    md.push_str(&row(
        "Completion: claude's `result` line arrives → `execute()` resolves",
        &c["after_result_line_s"],
        "s",
        "–",
    ));
    md.push_str(&row(
        "Log line: written in the container → arrives on the serve's stdout",
        &r["log_latency"]["line_ms"],
        "ms",
        "≤ 100 ms p50",
    ));
    let s = &r["start"];
    md.push_str(&row(
        "Start: `execute()` → Job created (introspection cached)",
        &s["execute_to_job_created_ms"],
        "ms",
        "≤ 50 ms p50",
    ));
    md.push_str(&row(
        "Start: `execute()` → pod Running",
        &s["execute_to_pod_running_s"],
        "s",
        "–",
    ));
    md.push_str(&format!(
        "\nThe first run of a serve process also reads its own pod: `execute()` → Job created took {} ms there.\n",
        s["first_run_execute_to_job_created_ms"].as_f64().map(round3).map(|v| v.to_string()).unwrap_or("?".into())
    ));
    if s["breakdown"].is_object() {
        md.push_str(&crate::start::render_breakdown(&s["breakdown"]));
    }
    md.push_str("\n## API requests per run (counted by the API server's audit log)\n\n| run length | requests | by verb | the serve's shared list/watch requests meanwhile (not the run's) |\n|---|---|---|---|\n");
    if let Some(m) = r["api_requests_per_run"].as_object() {
        let mut rows: Vec<_> = m.iter().collect();
        rows.sort_by_key(|(k, _)| k.trim_end_matches('s').parse::<u64>().unwrap_or(0));
        for (k, v) in rows {
            let verbs = |key: &str| {
                v[key]
                    .as_object()
                    .filter(|b| !b.is_empty())
                    .map(|b| {
                        b.iter()
                            .map(|(k, n)| format!("{k}: {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or("none".into())
            };
            md.push_str(&format!(
                "| {k} (took {} s) | {} | {} | {} |\n",
                v["run_seconds"],
                v["requests"],
                verbs("by_verb"),
                verbs("shared_watch_requests_in_window")
            ));
        }
    }
    md.push_str("\nTarget: ≤ 8 requests per run, whatever its length (the TypeScript adapter made 7 in a 64 s run, 10 in a 10 s run). Not counted: what a serve process does once per namespace for all its runs (the shared list and watch of pods and of Jobs, which kube's watcher reopens about every 5 minutes) and the read of its own pod.\n");
    md.push_str("\n## Scale: N concurrent runs under one serve process\n\n| N | complete | wall time | serve peak RSS | serve CPU per run |\n|---|---|---|---|---|\n");
    if let Some(m) = r["scale"].as_object() {
        let mut rows: Vec<_> = m.iter().collect();
        rows.sort_by_key(|(k, _)| k.parse::<usize>().unwrap_or(0));
        for (_, v) in rows {
            md.push_str(&format!(
                "| {} | {}/{} | {} s | {} MiB | {} s |\n",
                v["runs"],
                v["complete"],
                v["runs"],
                v["wall_seconds"],
                v["serve_peak_rss_mib"],
                v["serve_cpu_seconds_per_run"]
            ));
        }
    }
    md.push_str("\nTarget: 100 concurrent runs in ≤ 60 MB peak RSS. 1,000 concurrent runs on the simulated node (measured by hand, not by `make bench`): bench/simulated-node.md.\n");
    md.push_str(METHOD);
    md.push_str(&through_paperclip::section(paperclip));
    if let Some(kept) = by_hand {
        md.push('\n');
        md.push_str(kept);
    }
    md
}

const METHOD: &str = "
## How each figure is measured

- **Completion**: 20 sequential runs of the real `claude` (one scripted model reply from the project's fake
  Messages API) after a warm-up run. The bench runs its own pod watch (admin credentials) and records when it
  first sees the claude container terminated; `execute()` resolves when the serve process writes the `result`
  message (stamped on arrival at the bench). The result is written once claude is known to have exited (its
  terminated state, or after a successful result its shell's exit line and the kubelet's end of the exit probe),
  the log's tail is read and the Job deleted; its pod, in which nothing runs any more, is force-deleted after it. `finishedAt` has whole-second resolution in
  Kubernetes 1.20, and a run that ended before its terminated state has none. The final request is the last
  Messages request the fake API received in the run (its scripted reply is sent at once); the `result` line is
  stamped on its arrival at the bench like every line.
- **Log latency**: the light stand-in image (test/stage/images/claude-replay.sh) prints stream-json lines that
  carry their own write time (bash's `EPOCHREALTIME`, µs), 5 lines every 50 ms; latency is the line's arrival on
  the serve's stdout minus that time (same machine, same clock). Claude's own lines carry no write time, hence the
  stand-in; the path (container runtime log, kubelet, API server, the adapter's follower) is the same.
- **API requests per run**: a service account of the bench's own, bound to the adapter's Role
  (deploy/role.yaml), so the audit log (`--audit-policy-file`, metadata level, in test/stage/cluster.sh) holds
  only the adapter's requests. Counted from `execute()` sent until the run's objects are gone, after a warm-up
  run (self-introspection is once per process). Runs use the stand-in image printing 20 lines a second.
- **Scale**: one fresh serve process per N; N runs of different agents started at once, each the stand-in
  printing 200 lines over about 10 s, with tiny resource requests so that 100 pods fit the one node. Peak RSS is
  the serve process's `VmHWM`, CPU its `utime + stime`, both from /proc. A run is complete when its result is a
  success and every one of its lines arrived.
- **Start**: from `execute()` sent to the serve's `Job … created` progress line, and to the bench's pod watch
  seeing the claude container running. The breakdown takes the same runs: the bench's pod watch, dockerd's own
  event stream (`docker events`, nanosecond times; the kubelet names each container `k8s_<container>_<pod>_…`)
  and the fake API's record of its first request, all on this machine's clock.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn paperclip_results() -> Value {
        let s = |p50: f64, n: u64| json!({"n": n, "p50": p50, "p95": round3(p50 + 0.1), "max": round3(p50 + 0.2)});
        let length = |sleep: u64, took: f64| {
            json!({
                "bash_sleep_s": sleep, "heartbeats": 8, "run_seconds": s(took, 8),
                "start_from_invoke_s": s(2.5, 8), "start_from_run_created_s": s(2.4, 8),
                "log_record_s": s(0.042, 16), "log_seen_s": s(0.17, 16), "completion_s": s(1.125, 8),
            })
        };
        json!({
            "date": "2026-12-01T20:00:00Z", "commit": "abc1234", "dirty": false, "quick": false,
            "machine": "2 cores", "load_average_1m": [1.5, 2.25], "paperclip": "2026.916.1", "adapter": "0.1.0",
            "kubernetes": "v1.20.2", "claude": "2.1.328", "poll_ms": 250, "runs_per_length": 8,
            "lengths": [length(6, 10.3), length(56, 60.4)],
        })
    }

    #[test]
    fn the_part_written_by_hand_is_everything_from_the_marker() {
        let file = format!("# Benchmarks\n\nrendered\n\n{BY_HAND_MARKER}\n## By hand\n\nkept\n");
        assert_eq!(
            by_hand(&file),
            Some(format!("{BY_HAND_MARKER}\n## By hand\n\nkept\n").as_str())
        );
        assert_eq!(by_hand("# Benchmarks\n\nrendered only\n"), None);
    }

    #[test]
    fn renders_both_results_and_keeps_the_part_written_by_hand() {
        let inside = json!({
            "date": "2026-11-25T12:03:33Z", "commit": "5cb7603",
            "completion": {"after_watch_sees_termination_s": {"n": 20, "p50": 0.072, "p95": 0.093, "max": 0.109}},
        });
        let kept = format!("{BY_HAND_MARKER}\n## Issue 15 by hand\n\nfigures\n");
        let md = render(&inside, Some(&paperclip_results()), Some(&kept));
        assert!(md.contains("| 0.072 s | 0.093 s | 0.109 s | 20 |"), "{md}");
        assert!(md.contains("## Through Paperclip (outside-in)"), "{md}");
        assert!(
            md.contains(
                "| Start: heartbeat invoke request sent → the fake API receives the run's first request | one Bash call \
                 of 56 s (runs took 60.4 s p50) | 2.5 s | 2.6 s | 2.7 s | 8 heartbeats |"
            ),
            "{md}"
        );
        assert!(
            md.contains("(`ts`) | one Bash call of 6 s (runs took 10.3 s p50) | 0.042 s | 0.142 s | 0.242 s | 16 replies |"),
            "{md}"
        );
        assert!(
            md.contains("Paperclip's `finishedAt` | one Bash call of 6 s"),
            "{md}"
        );
        assert!(
            md.contains("load average at the start and after each length: 1.5, 2.25"),
            "{md}"
        );
        assert!(md.ends_with(&kept), "{md}");
        // Rendering the result again keeps the part written by hand once.
        let again = render(&inside, Some(&paperclip_results()), by_hand(&md));
        assert_eq!(again, md);
    }

    #[test]
    fn says_what_was_not_measured() {
        let md = render(&Value::Null, None, None);
        assert!(md.contains("are not measured yet here"), "{md}");
        assert!(
            md.contains("Not measured yet: `make bench-paperclip`"),
            "{md}"
        );
        assert!(!md.contains(BY_HAND_MARKER));
    }
}
