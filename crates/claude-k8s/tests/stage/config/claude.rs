//! The Claude fields as the real claude in the pod applies them, seen by the fake API: Bedrock (billing and the
//! model gate), `model`, `instructionsFilePath`, `extraArgs`, `env`, `dangerouslySkipPermissions`,
//! `maxTurnsPerRun`.

use serde_json::json;

use crate::support::{NAMESPACE, World, the_pod};

/// With `CLAUDE_CODE_USE_BEDROCK`, real claude talks to the fake's Bedrock runtime API (AWS event-stream framing):
/// a non-Bedrock model is not passed (Claude picks its Bedrock default), a Bedrock model id is; the AWS env
/// reaches the pod, and the result bills as `aws_bedrock` / `metered_api`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn bedrock_runs_bill_as_aws_bedrock_and_gate_the_model() {
    let mut world = World::start().await;
    let bedrock_env = json!({
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "ANTHROPIC_BEDROCK_BASE_URL": world.fake.url(),
        "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAFAKEFORTESTS",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1"
    });
    let bedrock_paths = |world: &World| -> Vec<String> {
        world
            .fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.starts_with("/model/"))
            .map(|r| r.path)
            .collect()
    };

    let (agent, config) = world
        .new_agent(json!({"model": "claude-sonnet-4-6", "env": bedrock_env, "retainJobs": true}));
    let run = world
        .run(&agent, &config, "Bedrock [[fake:text via bedrock]]")
        .await;
    let r = &run.result;
    assert_eq!(r["exitCode"], 0, "{}", run.dump());
    assert_eq!(r["biller"], "aws_bedrock", "{r:#}");
    assert_eq!(r["billingType"], "metered_api", "{r:#}");
    assert!(run.log_text().contains("via bedrock"), "{}", run.log_text());
    assert!(
        world.fake.message_requests().is_empty(),
        "not the Messages API"
    );
    let paths = bedrock_paths(&world);
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(
        paths[0].ends_with("/invoke-with-response-stream")
            && !paths[0].contains("claude-sonnet-4-6"),
        "the non-Bedrock model is not passed: {paths:?}"
    );
    let pod = the_pod(&world.stage.agent_pods(NAMESPACE, &agent).await);
    let env = pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        env.iter()
            .any(|e| e["name"] == "AWS_REGION" && e["value"] == "us-east-1"),
        "AWS_REGION reaches the pod"
    );
    // A secret-named config value reaches the pod through the run Secret, never as a literal in the pod spec.
    let key_id = env
        .iter()
        .find(|e| e["name"] == "AWS_ACCESS_KEY_ID")
        .expect("AWS_ACCESS_KEY_ID reaches the pod");
    assert!(key_id.get("value").is_none(), "{key_id}");
    assert!(
        key_id["valueFrom"]["secretKeyRef"]["name"].is_string(),
        "{key_id}"
    );
    assert!(
        !pod.to_string().contains("AKIAFAKEFORTESTS"),
        "no literal in the pod"
    );
    let args = pod["spec"]["containers"][0]["args"].as_array().unwrap();
    assert!(!args.contains(&json!("--model")));
    world.stage.delete_retained(NAMESPACE, &agent).await;

    let model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
    let (agent, config) = world.new_agent(json!({"model": model, "env": bedrock_env}));
    let run = world
        .run(&agent, &config, "Bedrock model [[fake:text pinned]]")
        .await;
    assert_eq!(run.result["exitCode"], 0, "{}", run.dump());
    assert_eq!(run.result["biller"], "aws_bedrock");
    let paths = bedrock_paths(&world);
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        paths[1].starts_with("/model/us.anthropic.claude-sonnet-4-5-20250929-v1"),
        "the Bedrock model id is passed: {paths:?}"
    );
    world.finish().await;
}

/// The Claude fields as the real claude in the pod applies them, seen by the API: `model` is the requested model,
/// `instructionsFilePath` (a file on the shared volume) and `extraArgs` reach the system prompt, `env` reaches the
/// process; with `dangerouslySkipPermissions: false` a Bash tool call is not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn claude_fields_take_effect_in_the_real_claude() {
    let mut world = World::start().await;

    let agent = world.agent();
    let workspace = world.stage.workspace(&agent);
    let instructions = format!("{workspace}/AGENTS.md");
    std::fs::write(
        &instructions,
        "Always answer as INSTRUCTIONS-MARKER-7f3a.\n",
    )
    .unwrap();
    std::os::unix::fs::chown(&instructions, Some(1000), Some(1000)).unwrap();
    let config = world.config(
        &agent,
        json!({
            "model": "claude-sonnet-4-6",
            "instructionsFilePath": instructions,
            "extraArgs": ["--append-system-prompt", "EXTRA-ARGS-MARKER-91c2"],
            "env": {"ANTHROPIC_BASE_URL": world.fake.url(), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                    "CLAUDE_CODE_MAX_RETRIES": "1", "AGENT_MARKER": "env-marker-55d1"},
        }),
    );
    let run = world
        .run(
            &agent,
            &config,
            "Fields [[fake:bash echo \"$AGENT_MARKER\" > env.txt]]",
        )
        .await;
    assert_eq!(run.result["exitCode"], 0, "{}", run.dump());
    let calls = world.fake.message_requests();
    let first = calls
        .iter()
        .find(|c| c.prompt_text().contains("Fields"))
        .expect("the run's Messages call");
    assert_eq!(first.model(), Some("claude-sonnet-4-6"));
    let system = first.system_text();
    assert!(
        system.contains("INSTRUCTIONS-MARKER-7f3a"),
        "instructions file not in the system prompt"
    );
    assert!(
        system.contains("EXTRA-ARGS-MARKER-91c2"),
        "extraArgs not applied"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{workspace}/env.txt"))
            .unwrap()
            .trim(),
        "env-marker-55d1",
        "the configured env reaches claude's Bash tool"
    );

    let agent = world.agent();
    let workspace = world.stage.workspace(&agent);
    let config = world.config(&agent, json!({"dangerouslySkipPermissions": false}));
    let run = world
        .run(
            &agent,
            &config,
            "No permission [[fake:bash echo no > denied.txt]]",
        )
        .await;
    assert!(run.result["exitCode"].is_number(), "{:#}", run.result);
    assert!(
        !std::path::Path::new(&format!("{workspace}/denied.txt")).exists(),
        "without --dangerously-skip-permissions the Bash call must not run\n{}",
        run.log_text()
    );
    let meta = run.meta.as_ref().expect("meta");
    assert!(
        !meta["commandArgs"]
            .to_string()
            .contains("--dangerously-skip-permissions"),
        "{meta:#}"
    );
    world.assert_nothing_left(&agent).await;

    // maxTurnsPerRun: claude stops after one turn although the reply asks for a tool call; the session is cleared.
    let (agent, config) = world.new_agent(json!({"maxTurnsPerRun": 1}));
    let run = world
        .run(
            &agent,
            &config,
            "One turn only [[fake:bash echo one > turn.txt]]",
        )
        .await;
    let meta = run.meta.as_ref().expect("meta");
    assert!(
        meta["commandArgs"]
            .to_string()
            .contains("\"--max-turns\",\"1\""),
        "{meta:#}"
    );
    let result_line = run
        .stdout_json()
        .into_iter()
        .find(|e| e["type"] == "result")
        .expect("claude's result line");
    assert_eq!(result_line["subtype"], "error_max_turns", "{result_line:#}");
    assert_eq!(run.result["clearSession"], true, "{:#}", run.result);
    world.finish().await;
}
