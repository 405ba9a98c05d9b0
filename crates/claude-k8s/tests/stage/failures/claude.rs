//! Runs that claude ends or that end around it: the adapter's timeout, a hang after the result, and the model
//! API's refusals (401, 429, a usage limit, 404) as claude_local names them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::World;

/// `timeoutSec` is enforced by the adapter: claude is stopped with its grace, the lines it wrote are collected,
/// and the result says `timedOut` with claude_local's code and words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_timeout_stops_claude_and_keeps_its_last_lines() {
    let mut world = World::start().await;
    let (agent, config) = world.new_agent(json!({"timeoutSec": 5, "graceSec": 3}));
    let started = Instant::now();
    let run = world
        .run(&agent, &config, "Slowly [[fake:slow 200 100ms]]")
        .await;
    let took = started.elapsed();
    let r = &run.result;
    assert_eq!(r["timedOut"], true, "{}", run.dump());
    assert_eq!(r["errorCode"], "timeout");
    assert_eq!(r["errorMessage"], "Timed out after 5s");
    let last = r["resultJson"]["lastLines"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        last.iter().any(|l| l
            .as_str()
            .unwrap_or_default()
            .contains("\"subtype\":\"init\"")),
        "the last lines are in the result: {}",
        run.dump()
    );
    assert!(r["sessionId"].is_string(), "{}", run.dump());
    // Bounded: 5 s, then the stop (grace 3 s) and the pod's removal, however slow the kubelet is.
    assert!(took < Duration::from_secs(150), "took {took:?}");
    assert!(
        run.progress_lines()
            .iter()
            .any(|l| l.contains("timed out after 5s")),
        "{}",
        run.dump()
    );
    world.finish().await;
}

/// Claude prints its final result but a background shell keeps it from exiting: the adapter stops it after a
/// short grace and the run succeeds with that result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_hang_after_the_result_is_stopped_and_the_run_succeeds() {
    let mut world = World::start_with_env(&[("CLAUDE_K8S_RESULT_GRACE_SEC", "3")]).await;
    let (agent, config) = world.new_agent(json!({"graceSec": 5}));
    let prompt = r#"Background [[fake:tool Bash {"command":"sleep 600","run_in_background":true}]] [[fake:text all done]]"#;
    let started = Instant::now();
    let run = world.run(&agent, &config, prompt).await;
    let took = started.elapsed();
    let r = &run.result;
    assert_eq!(r["exitCode"], 0, "{}", run.dump());
    assert!(
        r.get("errorCode").is_none_or(Value::is_null),
        "{}",
        run.dump()
    );
    assert_eq!(r["summary"], "all done");
    assert!(r["sessionId"].is_string());
    assert!(
        r["resultJson"]["unmanagedBackgroundTask"].is_object(),
        "{}",
        run.dump()
    );
    assert!(
        run.progress_lines()
            .iter()
            .any(|l| l.contains("has not exited")),
        "{}",
        run.dump()
    );
    assert!(took < Duration::from_secs(180), "took {took:?}");
    world.finish().await;
}

/// A 401 from the model API: claude_local's `claude_auth_required`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_401_is_claude_auth_required() {
    let mut world = World::start().await;
    let (agent, config) = world.new_agent(json!({}));
    let run = world.run(&agent, &config, "Auth [[fake:error 401]]").await;
    assert_eq!(
        run.result["errorCode"],
        "claude_auth_required",
        "{}",
        run.dump()
    );
    assert!(
        run.message().starts_with("Claude run failed"),
        "{}",
        run.dump()
    );
    world.finish().await;
}

/// A 429 the CLI retries past: the retry is shown as progress and the run succeeds; a 429 that persists is a
/// transient upstream failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_429_is_retried_visibly_then_succeeds_and_a_lasting_one_is_transient() {
    let mut world = World::start().await;
    let (agent, config) = world.new_agent(json!({}));
    let run = world
        .run(
            &agent,
            &config,
            "Busy [[fake:error 429 times=1]] [[fake:text after the retry]]",
        )
        .await;
    assert_eq!(run.result["exitCode"], 0, "{}", run.dump());
    assert_eq!(run.result["summary"], "after the retry");
    assert!(
        run.progress_lines()
            .iter()
            .any(|l| l.contains("model API rate-limited (429), retry 1 of 1 in")),
        "{}",
        run.dump()
    );
    world.assert_nothing_left(&agent).await;

    let run = world.run(&agent, &config, "Busy [[fake:error 429]]").await;
    assert_eq!(
        run.result["errorCode"],
        "claude_transient_upstream",
        "{}",
        run.dump()
    );
    assert_eq!(run.result["errorFamily"], "transient_upstream");
    world.assert_nothing_left(&agent).await;

    // A usage limit that names its reset time: a provider quota, with the time to retry (claude_local's
    // `retryNotBefore`), so Paperclip holds the agent until then.
    let run = world
        .run(
            &agent,
            &config,
            "Busy [[fake:error 429 reset=4pm/America/Chicago]]",
        )
        .await;
    assert_eq!(run.result["errorCode"], "provider_quota", "{}", run.dump());
    let at: jiff::Timestamp = run.result["retryNotBefore"]
        .as_str()
        .unwrap_or_else(|| panic!("retryNotBefore: {}", run.dump()))
        .parse()
        .unwrap();
    let chicago = at.to_zoned(jiff::tz::TimeZone::get("America/Chicago").unwrap());
    assert_eq!((chicago.hour(), chicago.minute()), (16, 0), "{chicago}");
    assert!(at > jiff::Timestamp::now());
    assert_eq!(
        run.result["resultJson"]["providerQuotaRetryNotBefore"],
        run.result["retryNotBefore"]
    );
    world.finish().await;
}

/// The model API answers 404 for the model: claude_local's `model_not_found`, with Claude's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_404_for_the_model_is_model_not_found() {
    let mut world = World::start().await;
    let (agent, config) = world.new_agent(json!({}));
    let run = world.run(&agent, &config, "Model [[fake:error 404]]").await;
    assert_eq!(run.result["errorCode"], "model_not_found", "{}", run.dump());
    assert!(run.message().contains("selected model"), "{}", run.dump());
    world.finish().await;
}
