//! Issue 7 on the real stage: an agent in a Job gets what claude_local gives Claude. The instructions file and the
//! runtime skills (from outside the shared volume) reach the real `claude` through the prompt bundle on `/paperclip`;
//! Paperclip's MCP servers reach it through the per-run `--mcp-config` file (mode 0400, UID 1000, token nowhere in
//! the Job, the log or the env); a Bash tool call reads the run's own agent from the API with `PAPERCLIP_API_URL`
//! and `PAPERCLIP_API_KEY`; changed instructions start a fresh session with the reason in the log.
//!
//! A stand-in for Paperclip's API and an MCP server ([`paperclip`]) run on 127.0.0.1; pods use the host network,
//! as in the other stage tests.

mod paperclip;

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{RUN_TOKEN, World, short_id};
use paperclip::{MCP_TOKEN, capability_params, own_shared_dirs, sources, start_fake_paperclip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn instructions_skills_and_paperclip_tools_reach_claude_in_the_job() {
    let mut world = World::start().await;
    let agent = world.agent();
    let paperclip = start_fake_paperclip(agent.clone()).await;
    let src = sources(&short_id());
    own_shared_dirs();
    let config = world.config(
        &agent,
        json!({"instructionsFilePath": src.instructions, "paperclipApiUrl": paperclip.url}),
    );
    let bash = "wget -qO- --header \"Authorization: Bearer $PAPERCLIP_API_KEY\" \"$PAPERCLIP_API_URL/api/agents/me\"; \
                echo; stat -L -c 'mcp-file %a %u %g' /var/run/claude-k8s/run/mcp-config.json; \
                env | grep -v '^PAPERCLIP_API_KEY=' | sort";
    let prompt = format!(
        "Check who you are. [[fake:bash {bash}]] [[fake:tool mcp__paperclip__whoami {{}}]] [[fake:text Capabilities checked]]"
    );
    let params = capability_params(&world.stage, &agent, &config, &prompt, &src, &paperclip);
    let id = world.serve.send_execute(&params).await;
    assert!(
        world
            .serve
            .wait_for_log(&id, Duration::from_secs(120), |c| c
                .contains("created in namespace"))
            .await,
        "the Job was created"
    );
    // The Job object as the API server holds it, while it runs.
    let job = world.stage.agent_jobs(&agent).await.remove(0);
    let job_text = serde_json::to_string(&job).unwrap();
    let rec = world.serve.wait_result(&id).await;
    let r = &rec.result;
    let log = rec.log_text();
    assert_eq!(r["exitCode"], 0, "{r:#}\n{log}");

    // The token never shows in the Job, the log (the meta included) or the pod's env.
    for token in [RUN_TOKEN, MCP_TOKEN] {
        assert!(!job_text.contains(token), "{token} in the Job: {job_text}");
        assert!(!log.contains(token), "{token} in the run log");
        assert!(
            !rec.meta.as_ref().unwrap().to_string().contains(token),
            "{token} in the meta"
        );
    }
    let args = rec.meta.as_ref().unwrap()["commandArgs"].clone();
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let after = |flag: &str| args.iter().position(|a| *a == flag).map(|i| args[i + 1]);
    let bundle = after("--add-dir").expect("--add-dir");
    assert!(
        bundle.starts_with(&format!(
            "/paperclip/test-instances/{agent}/companies/company-e2e/"
        )),
        "{args:?}"
    );
    assert_eq!(
        after("--append-system-prompt-file"),
        Some(format!("{bundle}/agent-instructions.md").as_str())
    );
    assert_eq!(
        after("--mcp-config"),
        Some("/var/run/claude-k8s/run/mcp-config.json")
    );
    assert!(args.contains(&"--strict-mcp-config"));

    // The bundle on the shared volume: the skill copied (its source is outside the volume), not linked.
    let skill_md = std::path::Path::new(bundle).join(".claude/skills/paperclip/SKILL.md");
    assert!(
        std::fs::read_to_string(&skill_md)
            .unwrap()
            .contains("SKILL-MARKER-7")
    );
    assert!(
        !std::fs::symlink_metadata(skill_md.parent().unwrap())
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // What the real claude sent the model.
    let requests = world.fake.message_requests();
    let first = &requests[0];
    let system = first.system_text();
    assert!(
        system.contains("INSTRUCTIONS-MARKER-7"),
        "instructions in the system prompt:\n{system}"
    );
    assert!(
        system.contains(&format!(
            "The above agent instructions were loaded from {}",
            src.instructions
        )),
        "the path directive"
    );
    assert!(system.contains("## Company skill library"), "the manifest");
    let whole = first.body.to_string();
    assert!(
        whole.contains("SKILL-MARKER-7"),
        "the paperclip skill is listed to the model"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.mentions_tool("mcp__paperclip__whoami")),
        "Paperclip's MCP tool is offered"
    );

    // The tools worked: the API call with the run's URL and key, the MCP call with the server's token.
    {
        let seen = paperclip.seen.lock().unwrap();
        assert_eq!(
            seen.me_auth,
            [format!("Bearer {RUN_TOKEN}")],
            "one authorized GET /api/agents/me"
        );
        assert!(
            seen.mcp_methods.iter().any(|m| m == "tools/call"),
            "{:?}",
            seen.mcp_methods
        );
        assert!(
            seen.mcp_auth
                .iter()
                .all(|a| a == &format!("Bearer {MCP_TOKEN}"))
        );
    }
    let results: String = requests
        .iter()
        .map(|r| r.body["messages"].to_string())
        .collect();
    assert!(
        results.contains(&agent),
        "the Bash tool result holds the agent from the API"
    );
    assert!(
        results.contains("mcp-file 440 0 1000"),
        "the MCP config is read-only, root's, readable by the agent's group (1000): {results}"
    );
    assert!(results.contains("MCP-WHOAMI-OK"));
    assert!(
        !results.contains(MCP_TOKEN),
        "no MCP token in the pod's env"
    );
    assert!(
        results.contains("PAPERCLIP_API_URL="),
        "the env dump is there"
    );

    assert_eq!(
        r["sessionParams"]["promptBundleKey"],
        bundle.rsplit('/').next().unwrap()
    );
    assert!(
        r["sessionParams"]["mcpServerIdentity"]
            .as_str()
            .unwrap()
            .contains("conn-e2e-1")
    );
    world.finish().await;
    let _ = std::fs::remove_dir_all(&src.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn unchanged_bundle_resumes_and_changed_instructions_start_fresh_with_the_reason() {
    let mut world = World::start().await;
    let agent = world.agent();
    let paperclip = start_fake_paperclip(agent.clone()).await;
    let src = sources(&short_id());
    own_shared_dirs();
    let config = world.config(&agent, json!({"instructionsFilePath": src.instructions}));
    let run = |n: u32, saved: Option<Value>| {
        let mut p = capability_params(
            &world.stage,
            &agent,
            &config,
            &format!("Heartbeat {n} [[fake:text Answer {n}]]"),
            &src,
            &paperclip,
        );
        p["runId"] = json!(format!("run-{agent}-{n}"));
        if let Some(saved) = saved {
            p["runtime"] = json!({"sessionId": saved["sessionId"], "sessionParams": saved});
        }
        p
    };

    let first = world.serve.execute(&run(1, None)).await;
    assert_eq!(
        first.result["exitCode"],
        0,
        "{:#}\n{}",
        first.result,
        first.log_text()
    );
    let saved = first.result["sessionParams"].clone();
    assert!(saved["promptBundleKey"].is_string(), "{saved}");

    let second = world.serve.execute(&run(2, Some(saved.clone()))).await;
    assert_eq!(second.result["exitCode"], 0, "{}", second.log_text());
    let args = second.meta.as_ref().unwrap()["commandArgs"].to_string();
    assert!(
        args.contains("--resume"),
        "unchanged bundle and servers: resumed: {args}"
    );
    assert!(!args.contains("--append-system-prompt-file"), "{args}");
    assert_eq!(second.result["sessionId"], saved["sessionId"]);

    std::fs::write(
        &src.instructions,
        "# Agent\n\nINSTRUCTIONS-MARKER-7b: the new rules.\n",
    )
    .unwrap();
    let before = world.fake.message_requests().len();
    let third = world
        .serve
        .execute(&run(3, Some(second.result["sessionParams"].clone())))
        .await;
    let log = third.log_text();
    assert_eq!(third.result["exitCode"], 0, "{log}");
    assert!(
        log.contains(&format!(
            "was saved for prompt bundle {}",
            saved["promptBundleKey"].as_str().unwrap()
        )),
        "the reason is in the log:\n{log}"
    );
    let args = third.meta.as_ref().unwrap()["commandArgs"].to_string();
    assert!(!args.contains("--resume"), "{args}");
    assert!(args.contains("--append-system-prompt-file"), "{args}");
    assert_ne!(
        third.result["sessionId"], saved["sessionId"],
        "a fresh session"
    );
    assert_ne!(
        third.result["sessionParams"]["promptBundleKey"],
        saved["promptBundleKey"]
    );
    assert!(
        world.fake.message_requests()[before]
            .system_text()
            .contains("INSTRUCTIONS-MARKER-7b"),
        "the new instructions reached the model"
    );

    // An agent-level heartbeat: Paperclip hands back only the bare session id. The adapter's session record on
    // the shared volume still knows the bundle the session ran with, so changed instructions start fresh too.
    std::fs::write(
        &src.instructions,
        "# Agent\n\nINSTRUCTIONS-MARKER-7c: newer rules.\n",
    )
    .unwrap();
    let third_key = third.result["sessionParams"]["promptBundleKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bare = run(4, None);
    bare["runtime"] = json!({"sessionId": third.result["sessionId"], "sessionParams": null});
    let fourth = world.serve.execute(&bare).await;
    let log = fourth.log_text();
    assert_eq!(fourth.result["exitCode"], 0, "{log}");
    assert!(
        log.contains(&format!("was saved for prompt bundle {third_key}")),
        "{log}"
    );
    assert_ne!(
        fourth.result["sessionId"], third.result["sessionId"],
        "a fresh session"
    );
    // And with the bundle unchanged, the bare id resumes.
    let mut bare = run(5, None);
    bare["runtime"] = json!({"sessionId": fourth.result["sessionId"], "sessionParams": null});
    let fifth = world.serve.execute(&bare).await;
    assert_eq!(
        fifth.result["sessionId"],
        fourth.result["sessionId"],
        "{}",
        fifth.log_text()
    );
    world.finish().await;
    let _ = std::fs::remove_dir_all(&src.dir);
}
