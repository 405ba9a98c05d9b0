//! Issue 14 on the real stage, "one run cannot hurt another": an agent that writes one huge line to its stdout
//! (the real claude running the attacker's Bash command) gets it cut at the source with a marker, while another
//! agent's run streams through the same serve process whole, the serve process never holds the huge line, and
//! the next execute on that process works.

use std::time::Duration;

use serde_json::json;

use crate::support::World;

/// `head -c 70M` from the issue: 70 MiB.
const HUGE: usize = 70 * 1024 * 1024;
/// The default `CLAUDE_K8S_MAX_LINE_BYTES`.
const LIMIT: usize = 4 * 1024 * 1024;

/// The serve process's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_70_mib_line_is_cut_at_the_source_while_another_run_streams_whole() {
    let mut world = World::start().await;
    // The other agent: 3,000 lines over about a minute, so that it streams while the huge line passes.
    const LINES: usize = 3000;
    let (steady, steady_config) = world.new_agent(json!({
        "image": world.stage.replay_image,
        "env": {"REPLAY_LINES": LINES.to_string(), "REPLAY_BATCH": "50", "REPLAY_PAUSE_MS": "1000"}
    }));
    let steady_params = world.stage.params(&steady, &steady_config, "replay", None);
    let steady_id = world.serve.send_execute(&steady_params).await;
    assert!(
        world
            .serve
            .wait_for_log(&steady_id, Duration::from_secs(120), |l| l
                .contains("replay line 1 of"))
            .await,
        "the steady run streams"
    );
    // The attacker: the real claude runs a Bash command that writes 70 MiB without a newline but the last one
    // straight to the container's stdout (the reproduction).
    let (attacker, attacker_config) = world.new_agent(json!({}));
    let attack = format!(
        "Write a huge line [[fake:bash {{ head -c {HUGE} /dev/zero | tr '\\0' A; echo; }} > /proc/1/fd/1]] \
         [[fake:text Wrote it]]"
    );
    let attacker_params = world
        .stage
        .params(&attacker, &attacker_config, &attack, None);
    let attacker_id = world.serve.send_execute(&attacker_params).await;

    let attacked = world.serve.wait_result(&attacker_id).await;
    let steady_run = world.serve.wait_result(&steady_id).await;

    // The huge line arrived cut, with the marker, as one line: its first 4 MiB.
    assert_eq!(attacked.result["exitCode"], 0, "{}", attacked.result);
    let cut_at = attacked
        .logs
        .iter()
        .position(|(_, chunk)| chunk.starts_with("[claude-k8s] line cut:"))
        .unwrap_or_else(|| panic!("no cut line; progress: {:?}", attacked.progress_lines()));
    let cut = &attacked.logs[cut_at].1;
    // The count is what reached the adapter. Run alone it is every byte; in the full suite (two runs at a time on
    // the 2-core stage) the 1.20 kubelet's follow reader once dropped part of the burst (70,762,816 of the
    // 73,400,320 bytes arrived), so the count is checked to be between the cut and what claude wrote.
    let head = &cut[..300.min(cut.len())];
    let counted: usize = head
        .strip_prefix("[claude-k8s] line cut: claude wrote a line of ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in the marker: {head}"));
    assert!((LIMIT..=HUGE).contains(&counted), "{head}");
    let marker = format!(
        "[claude-k8s] line cut: claude wrote a line of {counted} bytes; its first {LIMIT} follow \
         (CLAUDE_K8S_MAX_LINE_BYTES): "
    );
    assert!(cut.starts_with(&marker), "{head}");
    let kept = cut[marker.len()..].trim_end_matches('\n');
    assert_eq!(kept.len(), LIMIT);
    assert!(kept.bytes().all(|b| b == b'A'));
    assert!(
        attacked.logs.iter().all(|(_, c)| c.len() < LIMIT + 1024),
        "no line of the run is longer than the cut one"
    );
    assert!(
        attacked.log_text().contains("Wrote it"),
        "the run went on after the line: {}",
        attacked.result
    );

    // The other run completed with its whole transcript, in order, while the huge line passed.
    assert_eq!(steady_run.result["exitCode"], 0, "{}", steady_run.result);
    let lines = steady_run.transcript_lines();
    let replayed: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("replay line "))
        .collect();
    assert_eq!(replayed.len(), LINES, "every line once");
    for (i, line) in replayed.iter().enumerate() {
        assert!(
            line.contains(&format!("\"replay line {} of {LINES} ", i + 1)),
            "line {} in order: {line}",
            i + 1
        );
    }
    let cut_arrived = attacked.log_at[cut_at];
    let (first, last) = (steady_run.log_at[0], *steady_run.log_at.last().unwrap());
    assert!(
        first < cut_arrived && cut_arrived < last,
        "the steady run was streaming when the huge line passed"
    );

    // The serve process never held the line whole (70 MiB, and its JSON copy, would be well over this).
    let peak = peak_rss(world.serve.pid());
    assert!(
        peak < 160 * 1024 * 1024,
        "serve's peak RSS is {} MiB",
        peak >> 20
    );

    // The next execute on the same serve process works.
    let (next, next_config) = world.new_agent(json!({
        "image": world.stage.replay_image,
        "env": {"REPLAY_LINES": "3"}
    }));
    let after = world.run(&next, &next_config, "replay").await;
    assert_eq!(after.result["exitCode"], 0, "{}", after.dump());
    assert_eq!(
        after.transcript_lines().len(),
        3 + 2,
        "init, 3 lines, result"
    );
    world.finish().await;
}
