use super::*;
use crate::run::prepare::pod_facts::tests::paperclip_pod;
use serde_json::json;

/// The working directory in the seed's layout (the volume root when there is no workspace).
fn working_directory_of(p: &ExecuteParams, c: &AgentConfig) -> String {
    working_directory(p, c, View::whole_volume().fallback_cwd())
}

const SESSION: &str = "5b1b7e0e-8f2a-4c4e-9a57-0c0d1e2f3a4b";

fn params(v: Value) -> ExecuteParams {
    serde_json::from_value(v).unwrap()
}

fn config(v: Value) -> AgentConfig {
    AgentConfig::parse(v.as_object().unwrap()).unwrap()
}

fn base() -> Value {
    json!({"runId": "run-1", "agent": {"id": "agent-1", "companyId": "co-1", "name": "A"},
           "prompt": {"fresh": "FRESH", "resume": "RESUME"},
           "context": {"paperclipWorkspace": {"cwd": "/paperclip/instances/default/workspaces/agent-1", "source": "agent_home"}},
           "paperclipEnv": {"PAPERCLIP_RUN_ID": "run-1", "PAPERCLIP_API_URL": "http://127.0.0.1:3100", "PAPERCLIP_API_KEY": "leak"}})
}

#[test]
fn fresh_run_args_match_claude_local() {
    let p = params(base());
    let c = config(
        json!({"model": "claude-sonnet-4-6", "effort": "high", "maxTurnsPerRun": 7,
                          "extraArgs": ["--foo", "bar"], "instructionsFilePath": "/paperclip/AGENTS.md"}),
    );
    let inv = Invocation::build(&p, &c, &PodFacts::from_pod(&paperclip_pod()), None);
    assert_eq!(
        inv.args.join(" "),
        "--print --output-format stream-json --verbose --dangerously-skip-permissions --model claude-sonnet-4-6 \
         --effort high --max-turns 7 --append-system-prompt-file /paperclip/AGENTS.md --foo bar"
    );
    assert_eq!(inv.prompt, "FRESH");
    assert_eq!(inv.cwd, "/paperclip/instances/default/workspaces/agent-1");
}

#[test]
fn resumed_run_uses_the_resume_prompt_and_no_instructions_file() {
    let p = params(base());
    let c = config(
        json!({"instructionsFilePath": "/paperclip/AGENTS.md", "dangerouslySkipPermissions": false}),
    );
    let inv = Invocation::build(&p, &c, &PodFacts::default(), Some(SESSION.into()));
    assert_eq!(
        inv.args.join(" "),
        format!("--print --output-format stream-json --verbose --resume {SESSION}")
    );
    assert_eq!(inv.prompt, "RESUME");
}

#[test]
fn resume_gating_for_task_and_agent_level_runs() {
    let c = config(json!({}));
    // Agent-level heartbeat: a bare session id.
    let mut v = base();
    v["runtime"] = json!({"sessionId": SESSION});
    assert_eq!(
        resumable_session(&params(v), &c, &Toolkit::default(), &View::whole_volume())
            .unwrap()
            .as_deref(),
        Some(SESSION)
    );
    // Task run: full sessionParams with the same cwd.
    let mut v = base();
    v["runtime"] = json!({"sessionParams": {"sessionId": SESSION, "cwd": "/paperclip/instances/default/workspaces/agent-1/"}});
    assert_eq!(
        resumable_session(&params(v), &c, &Toolkit::default(), &View::whole_volume())
            .unwrap()
            .as_deref(),
        Some(SESSION)
    );
    // Saved for another directory.
    let mut v = base();
    v["runtime"] = json!({"sessionParams": {"sessionId": SESSION, "cwd": "/elsewhere"}});
    assert!(
        resumable_session(&params(v), &c, &Toolkit::default(), &View::whole_volume())
            .unwrap_err()
            .contains("/elsewhere")
    );
    // Not a UUID.
    let mut v = base();
    v["runtime"] = json!({"sessionId": "nope"});
    assert!(resumable_session(&params(v), &c, &Toolkit::default(), &View::whole_volume()).is_err());
    assert_eq!(
        resumable_session(
            &params(base()),
            &c,
            &Toolkit::default(),
            &View::whole_volume()
        )
        .unwrap(),
        None
    );
}

#[test]
fn saved_session_fields_are_read_with_claude_locals_spellings_and_fallbacks() {
    let c = config(json!({}));
    let cwd = "/paperclip/instances/default/workspaces/agent-1";
    let resumed = |session_params: Value, session_id: Value| {
        let mut v = base();
        v["runtime"] = json!({"sessionParams": session_params, "sessionId": session_id});
        resumable_session(
            &params(v),
            &c,
            &caps("k1", json!([])),
            &View::whole_volume(),
        )
    };
    // A blank or non-string sessionId falls back to session_id, then to the bare runtime id; ids are trimmed.
    for saved in [json!(""), json!("  "), json!(42), json!(null)] {
        assert_eq!(
            resumed(
                json!({"sessionId": saved, "session_id": format!(" {SESSION} "), "cwd": cwd}),
                json!(null)
            )
            .unwrap()
            .as_deref(),
            Some(SESSION),
            "sessionId {saved}"
        );
    }
    assert_eq!(
        resumed(json!({"sessionId": " "}), json!(format!("{SESSION}\n")))
            .unwrap()
            .as_deref(),
        Some(SESSION)
    );
    // An empty or blank cwd falls back to workdir, then folder; the cwd is trimmed.
    let other = "/elsewhere";
    for (saved, resumes) in [
        (json!({"cwd": "", "workdir": cwd}), true),
        (json!({"cwd": "   ", "workdir": "", "folder": cwd}), true),
        (json!({"cwd": format!("  {cwd}/ ")}), true),
        (json!({"cwd": "", "workdir": other}), false),
        (json!({"cwd": 7, "folder": other}), false),
    ] {
        let mut sp = saved.clone();
        sp["sessionId"] = json!(SESSION);
        assert_eq!(resumed(sp, json!(null)).is_ok(), resumes, "{saved}");
    }
    // The bundle key in either spelling (a blank camelCase one falls back too).
    for saved in [
        json!({"promptBundleKey": "k2"}),
        json!({"prompt_bundle_key": "k2"}),
        json!({"promptBundleKey": " ", "prompt_bundle_key": "k2"}),
    ] {
        let mut sp = saved.clone();
        sp["sessionId"] = json!(SESSION);
        let why = resumed(sp, json!(null)).unwrap_err();
        assert!(why.contains("prompt bundle k2"), "{saved}: {why}");
    }
    // Saved params without a session id are not a session's: the bare runtime id resumes, unchecked.
    assert_eq!(
        resumed(json!({"cwd": other}), json!(SESSION))
            .unwrap()
            .as_deref(),
        Some(SESSION)
    );
}

fn caps(key: &str, mcp: Value) -> Toolkit {
    let servers = crate::run::prepare::mcp::servers(mcp.as_array().unwrap());
    Toolkit {
        bundle: Some(crate::run::prepare::prompt_bundle::PromptBundle {
            key: key.into(),
            root: format!("/paperclip/cache/{key}"),
            instructions_file: Some(format!("/paperclip/cache/{key}/agent-instructions.md")),
        }),
        mcp_identity: crate::run::prepare::mcp::identity(&servers),
        mcp: servers,
        notes: vec![],
    }
}

fn one_server() -> Value {
    json!([{"name": "Paperclip projects", "url": "http://127.0.0.1:3100/api/mcp/project-tools", "token": "t", "connectionId": "c1"}])
}

#[test]
fn bundle_and_mcp_args_follow_claude_locals_order() {
    let p = params(base());
    let c = config(json!({"instructionsFilePath": "/paperclip/AGENTS.md", "extraArgs": ["--foo"]}));
    let inv = Invocation::build_with(
        &p,
        &c,
        &PodFacts::default(),
        None,
        &caps("k1", one_server()),
        &View::whole_volume(),
    );
    assert_eq!(
        inv.args.join(" "),
        "--print --output-format stream-json --verbose --dangerously-skip-permissions \
         --append-system-prompt-file /paperclip/cache/k1/agent-instructions.md \
         --mcp-config /var/run/claude-k8s/run/mcp-config.json --strict-mcp-config \
         --add-dir /paperclip/cache/k1 --foo"
    );
    // Resumed: no instructions file; the tools and the bundle directory stay.
    let inv = Invocation::build_with(
        &p,
        &c,
        &PodFacts::default(),
        Some(SESSION.into()),
        &caps("k1", json!([])),
        &View::whole_volume(),
    );
    assert_eq!(
        inv.args.join(" "),
        format!(
            "--print --output-format stream-json --verbose --resume {SESSION} --dangerously-skip-permissions \
             --add-dir /paperclip/cache/k1 --foo"
        )
    );
}

#[test]
fn resume_is_gated_on_the_bundle_key_and_the_mcp_servers() {
    let c = config(json!({}));
    let cwd = "/paperclip/instances/default/workspaces/agent-1";
    let saved = |extra: Value| {
        let mut v = base();
        let mut sp = json!({"sessionId": SESSION, "cwd": cwd});
        for (k, val) in extra.as_object().unwrap() {
            sp[k] = val.clone();
        }
        v["runtime"] = json!({"sessionParams": sp});
        params(v)
    };
    let ident = crate::run::prepare::mcp::identity(&crate::run::prepare::mcp::servers(
        one_server().as_array().unwrap(),
    ));
    let same = saved(json!({"promptBundleKey": "k1", "mcpServerIdentity": ident}));
    assert_eq!(
        resumable_session(&same, &c, &caps("k1", one_server()), &View::whole_volume())
            .unwrap()
            .as_deref(),
        Some(SESSION)
    );
    let why =
        resumable_session(&same, &c, &caps("k2", one_server()), &View::whole_volume()).unwrap_err();
    assert!(
        why.contains("prompt bundle k1") && why.contains("k2"),
        "{why}"
    );
    let why =
        resumable_session(&same, &c, &caps("k1", json!([])), &View::whole_volume()).unwrap_err();
    assert!(why.contains("MCP server set"), "{why}");
    // Saved without an identity: resumable only while there are no servers (claude_local's rule).
    let old = saved(json!({"promptBundleKey": "k1"}));
    assert!(
        resumable_session(&old, &c, &caps("k1", json!([])), &View::whole_volume())
            .is_ok_and(|s| s.is_some())
    );
    assert!(resumable_session(&old, &c, &caps("k1", one_server()), &View::whole_volume()).is_err());
    // Saved without a key (an older run): any bundle.
    let keyless = saved(json!({"mcpServerIdentity": "[]"}));
    assert!(
        resumable_session(&keyless, &c, &caps("k9", json!([])), &View::whole_volume())
            .is_ok_and(|s| s.is_some())
    );
    // A bare id (agent-level heartbeat) has nothing to compare and resumes.
    let mut v = base();
    v["runtime"] = json!({"sessionId": SESSION});
    assert_eq!(
        resumable_session(
            &params(v),
            &c,
            &caps("k1", one_server()),
            &View::whole_volume()
        )
        .unwrap()
        .as_deref(),
        Some(SESSION)
    );
}

#[test]
fn env_layers_runtime_then_config_and_never_takes_the_token_from_config() {
    let p = params(base());
    let c = config(
        json!({"env": {"FOO": "bar", "PAPERCLIP_RUN_ID": "spoof", "PAPERCLIP_API_KEY": "x"}}),
    );
    let inv = Invocation::build(&p, &c, &PodFacts::from_pod(&paperclip_pod()), None);
    let get = |k: &str| {
        inv.env
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("FOO"), Some("bar"));
    assert_eq!(get("PAPERCLIP_RUN_ID"), Some("run-1"));
    assert_eq!(get("PAPERCLIP_API_KEY"), None);
    assert_eq!(get("HOME"), Some("/paperclip"));
    // The server's loopback URL is replaced by the Paperclip pod's own value.
    assert_eq!(
        get("PAPERCLIP_API_URL"),
        Some("http://paperclip.paperclip.svc:3100")
    );
}

#[test]
fn api_url_is_never_a_silent_loopback() {
    let p = params(base());
    let inv = Invocation::build(&p, &config(json!({})), &PodFacts::default(), None);
    assert!(inv.env.iter().all(|(k, _)| k != "PAPERCLIP_API_URL"));
    assert!(inv.notes.iter().any(|n| n.contains("paperclipApiUrl")));
    // Explicitly configured loopback is honoured (host-network pods).
    let inv = Invocation::build(
        &p,
        &config(json!({"paperclipApiUrl": "http://127.0.0.1:3100"})),
        &PodFacts::default(),
        None,
    );
    assert!(
        inv.env
            .contains(&("PAPERCLIP_API_URL".into(), "http://127.0.0.1:3100".into()))
    );
}

#[test]
fn bedrock_gates_the_model_flag() {
    let p = params(base());
    let c = config(json!({"model": "claude-sonnet-4-6", "env": {"CLAUDE_CODE_USE_BEDROCK": "1"}}));
    let inv = Invocation::build(&p, &c, &PodFacts::default(), None);
    assert!(inv.bedrock);
    assert!(!inv.args.contains(&"--model".to_owned()));
    let c = config(
        json!({"model": "us.anthropic.claude-sonnet-4-5-20250929-v2:0", "env": {"CLAUDE_CODE_USE_BEDROCK": "true"}}),
    );
    assert!(
        Invocation::build(&p, &c, &PodFacts::default(), None)
            .args
            .contains(&"--model".to_owned())
    );
    assert!(is_bedrock_model_id(
        "arn:aws:bedrock:us-east-1:1:inference-profile/x"
    ));
    assert!(!is_bedrock_model_id("claude-opus-5"));
}

#[test]
fn bedrock_is_detected_from_the_inherited_env_too() {
    let p = params(base());
    let c = config(json!({"model": "claude-sonnet-4-6"}));
    let with_env = |env: Value| {
        let mut pod = paperclip_pod();
        let container = &mut pod.spec.as_mut().unwrap().containers[1];
        container
            .env
            .as_mut()
            .unwrap()
            .push(serde_json::from_value(env).unwrap());
        PodFacts::from_pod(&pod)
    };
    for env in [
        json!({"name": "CLAUDE_CODE_USE_BEDROCK", "value": "1"}),
        json!({"name": "CLAUDE_CODE_USE_BEDROCK", "value": "TRUE"}),
        json!({"name": "CLAUDE_CODE_USE_BEDROCK", "valueFrom": {"configMapKeyRef": {"name": "aws", "key": "bedrock"}}}),
        json!({"name": "ANTHROPIC_BEDROCK_BASE_URL", "value": "https://bedrock-runtime.us-east-1.amazonaws.com"}),
    ] {
        let inv = Invocation::build(&p, &c, &with_env(env.clone()), None);
        assert!(inv.bedrock, "{env}");
        assert!(!inv.args.contains(&"--model".to_owned()), "{env}");
    }
    for env in [
        json!({"name": "CLAUDE_CODE_USE_BEDROCK", "value": "0"}),
        json!({"name": "CLAUDE_CODE_USE_BEDROCK", "value": "false"}),
    ] {
        let inv = Invocation::build(&p, &c, &with_env(env.clone()), None);
        assert!(!inv.bedrock, "{env}");
        assert!(inv.args.contains(&"--model".to_owned()), "{env}");
    }
    // Config env wins over the inherited value.
    let c = config(json!({"model": "claude-sonnet-4-6", "env": {"CLAUDE_CODE_USE_BEDROCK": "0"}}));
    let facts = with_env(json!({"name": "CLAUDE_CODE_USE_BEDROCK", "value": "1"}));
    assert!(!Invocation::build(&p, &c, &facts, None).bedrock);
}

#[test]
fn explicit_cwd_beats_agent_home_but_not_a_project_workspace() {
    let c = config(json!({"cwd": "/paperclip/custom"}));
    assert_eq!(
        working_directory_of(&params(base()), &c),
        "/paperclip/custom"
    );
    let mut v = base();
    v["context"]["paperclipWorkspace"]["source"] = json!("project_primary");
    assert_eq!(
        working_directory_of(&params(v), &c),
        "/paperclip/instances/default/workspaces/agent-1"
    );
    assert_eq!(
        working_directory_of(
            &params(json!({"runId": "r", "agent": {"id": "a"}})),
            &config(json!({}))
        ),
        "/paperclip"
    );
}

#[test]
fn loopback_urls_are_recognised_by_their_parsed_host() {
    for url in [
        "http://127.0.0.1:3100",
        "http://127.8.9.10/api",
        "http://localhost:3100",
        "http://LOCALHOST",
        "http://[::1]:3100/api",
        "http://user@127.0.0.1",
        "127.0.0.1:3100",
    ] {
        assert!(is_loopback_url(url), "{url}");
    }
    for url in [
        "http://paperclip.paperclip.svc:3100",
        "http://10.0.0.1:3100",
        "http://[fd00::1]:3100",
        "http://127.example.com",
        "http://[",
    ] {
        assert!(!is_loopback_url(url), "{url}");
    }
}
