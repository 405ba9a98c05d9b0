//! Figure 4: how far one serve process goes, N concurrent runs, its peak RSS and CPU time from /proc.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::report::round3;
use crate::support::World;

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/pid/stat, 12 and 13 after the `)`.
    (ticks(11) + ticks(12)) / 100.0
}

/// Figure 4: N concurrent runs under one serve process (a fresh one per N), with the light stand-in image.
pub async fn scale(ns: &[usize]) -> Value {
    let mut out = serde_json::Map::new();
    const LINES: usize = 200;
    for &n in ns {
        let mut world = World::start().await;
        let pid = world.serve.pid();
        let started = Instant::now();
        let mut ids = vec![];
        for _ in 0..n {
            let (agent, config) = world.new_agent(
                                json!({"image": world.stage.replay_image,
                       "resources.requests.cpu": "1m", "resources.requests.memory": "4Mi",
                       "resources.limits.memory": "64Mi",
                       "env": {"REPLAY_LINES": LINES.to_string(), "REPLAY_BATCH": "10", "REPLAY_PAUSE_MS": "500"}}),
            );
            ids.push(world.send(&agent, &config, "replay").await);
        }
        let mut done = vec![];
        let deadline = Instant::now() + Duration::from_secs(1200);
        while done.len() < n && Instant::now() < deadline {
            done = world.serve.collect_for(Duration::from_secs(1)).await;
        }
        let wall = started.elapsed().as_secs_f64();
        let rss_kib = proc_status(pid, "VmHWM:").unwrap_or(0);
        let cpu = cpu_seconds(pid);
        let mut complete = 0;
        for id in &ids {
            if !done.contains(id) {
                continue;
            }
            let r = world.serve.take(id);
            let lines = r
                .log_text()
                .lines()
                .filter(|l| l.contains("replay line ") || l.contains("\"type\":\"result\""))
                .count();
            if r.result["exitCode"] == 0 && lines == LINES + 1 {
                complete += 1;
            }
        }
        world.finish().await;
        out.insert(
            n.to_string(),
            json!({"runs": n, "complete": complete, "wall_seconds": round3(wall),
                   "serve_peak_rss_mib": round3(rss_kib as f64 / 1024.0),
                   "serve_cpu_seconds_per_run": round3(cpu / n as f64)}),
        );
    }
    Value::Object(out)
}
