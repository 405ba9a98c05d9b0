//! The section "Through Paperclip (outside-in)" of BENCHMARKS.md, rendered from what
//! test/stage/bench/paperclip-bench.mjs wrote (bench/paperclip.json): heartbeats through the real Paperclip, timed
//! with the fake Messages API's and Paperclip's own clocks.

use serde_json::Value;

/// One figure of the section: its row label, its key in each length's summary, and the unit of its samples.
struct Figure {
    label: &'static str,
    key: &'static str,
    samples: &'static str,
}

const FIGURES: &[Figure] = &[
    Figure {
        label: "Start: heartbeat invoke request sent → the fake API receives the run's first request",
        key: "start_from_invoke_s",
        samples: "heartbeats",
    },
    Figure {
        label: "Start: Paperclip's run record created (`createdAt`) → the fake API receives the run's first request",
        key: "start_from_run_created_s",
        samples: "heartbeats",
    },
    Figure {
        label: "Log: a reply complete at the fake API → its line's record in Paperclip's run log (`ts`)",
        key: "log_record_s",
        samples: "replies",
    },
    Figure {
        label: "Log: a reply complete at the fake API → the bench's poll of the run log first has its line",
        key: "log_seen_s",
        samples: "replies",
    },
    Figure {
        label: "Completion: the run's final reply complete at the fake API → Paperclip's `finishedAt`",
        key: "completion_s",
        samples: "heartbeats",
    },
];

fn seconds(v: &Value) -> String {
    v.as_f64()
        .map(|s| format!("{s} s"))
        .unwrap_or_else(|| "–".into())
}

/// How a length is named in the table: its tool call and how long its runs took.
fn length_label(length: &Value) -> String {
    format!(
        "one Bash call of {} s (runs took {} p50)",
        length["bash_sleep_s"],
        seconds(&length["run_seconds"]["p50"])
    )
}

/// The section, or a note that it was not measured yet when `results` is `None`.
pub fn section(results: Option<&Value>) -> String {
    let mut md = String::from("\n## Through Paperclip (outside-in)\n\n");
    let Some(r) = results else {
        md.push_str(
            "Not measured yet: `make bench-paperclip` (or `make bench`) writes bench/paperclip.json, from which this \
             section is rendered.\n",
        );
        md.push_str(METHOD);
        return md;
    };
    md.push_str(&format!(
        "Heartbeats of a `claude_k8s` agent invoked through the real Paperclip {} on this machine, the adapter {} \
         installed from its packed tarball, each run the real Claude Code {} in a Job on Kubernetes {}.\n\n",
        r["paperclip"].as_str().unwrap_or("?"),
        r["adapter"].as_str().unwrap_or("?"),
        r["claude"].as_str().unwrap_or("?"),
        r["kubernetes"].as_str().unwrap_or("?"),
    ));
    md.push_str(&format!(
        "- Date: {}\n- Machine: {}; 1-minute load average at the start and after each length: {}\n- Commit: {}{}\n- \
         Heartbeats per length: {} after a warm-up heartbeat{}\n\n",
        r["date"].as_str().unwrap_or("?"),
        r["machine"].as_str().unwrap_or("?"),
        r["load_average_1m"]
            .as_array()
            .map(|l| l
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_else(|| "?".into()),
        r["commit"].as_str().unwrap_or("?"),
        if r["dirty"] == true {
            " (with uncommitted changes)"
        } else {
            ""
        },
        r["runs_per_length"],
        if r["quick"] == true {
            " (`BENCH_QUICK=1`: a smoke, not figures to quote)"
        } else {
            ""
        },
    ));
    md.push_str("| figure | run | p50 | p95 | max | samples |\n|---|---|---|---|---|---|\n");
    let lengths = r["lengths"].as_array().cloned().unwrap_or_default();
    for figure in FIGURES {
        for length in &lengths {
            let s = &length[figure.key];
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} {} |\n",
                figure.label,
                length_label(length),
                seconds(&s["p50"]),
                seconds(&s["p95"]),
                seconds(&s["max"]),
                s["n"].as_u64().unwrap_or(0),
                figure.samples,
            ));
        }
    }
    md.push_str(&format!(
        "\nThe bench polled the run's log and record every {} ms. Each heartbeat's raw times are in \
         the paperclip.json this section was rendered from.\n",
        r["poll_ms"]
    ));
    md.push_str(METHOD);
    md
}

const METHOD: &str = "
How it is measured (test/stage/bench/paperclip-bench.mjs, run by test/stage/run-bench.sh): the host's Paperclip is
restarted with the stage's environment (its self pod, the least-privilege kubeconfig, the operator policy), the
packed adapter installed and reloaded unless Paperclip already runs this very tarball, and one agent per run length
created, whose prompt makes the fake Messages API script one Bash tool call
of N seconds and then a final text reply. The call is `timeout N+60 sleep N`: Claude Code 2.1.328 refuses a command
that begins with `sleep N` for N ≥ 25 without running it. A run that takes less than its tool call fails the bench.
Each heartbeat is invoked with `POST /api/agents/{id}/heartbeat/invoke` and followed by polling Paperclip's REST
API; the next starts once the run's Job, pods and Lease are gone and a second has passed. The agent's first
heartbeat is a warm-up and not counted; the others resume its session, as a real agent's heartbeats do. All clocks
are this machine's, in milliseconds:

- **Start** ends when the fake API receives the run's first request (every request after the previous run's is
  this run's; one of them must carry the run id, which the prompt holds). It starts either when the bench sends
  the invoke request, or at the run record's `createdAt`, which Paperclip sets while answering it.
- **Log** starts at the fake API's reply-complete time (`replied_at_unix_ms`: its reply's last byte handed to the
  connection, after `message_stop`) and ends at the record of Paperclip's run log that completes the stream-json
  `assistant` line carrying that reply's message id (the last such line, when a reply has several blocks): the
  record's `ts`, which Paperclip stamps when the adapter's `onLog` hands it the chunk. The second row ends instead
  when the bench's poll of the log first returns that line (resolution: the poll interval). Every reply of every
  counted heartbeat is one sample.
- **Completion** starts at the latest reply-complete time of the run's requests and ends at the run's
  `finishedAt`, which Paperclip sets after `execute()` resolved and it finalized the run log (ms).
";
