use super::*;
use crate::run::outcome::ExecutionResult;
use serde_json::json;

fn config(v: Value) -> AgentConfig {
    AgentConfig::parse(v.as_object().unwrap()).unwrap()
}

fn policy(v: Value) -> Policy {
    parse(&v, Source::Inline).unwrap()
}

fn fields(r: Result<(), Denied>) -> Vec<String> {
    r.err()
        .map(|d| d.denials.into_iter().map(|d| d.field).collect())
        .unwrap_or_default()
}

const SCOPE: RunScope<'static> = RunScope {
    instance_root: Some("/paperclip/instances/default"),
    company_id: "co-1",
    agent_id: "agent-1",
};

#[test]
fn the_default_refuses_every_widening_field() {
    let p = Policy::default();
    let hostile = config(json!({
        "podSpecPatch": {"hostPID": true},
        "serviceAccountName": "paperclip",
        "namespace": "kube-system",
        "image": "evil.example/claude:1",
        "initImage": "evil.example/busybox:1",
        "kubeconfig": "/etc/kubernetes/admin.conf",
        "paperclipApiUrl": "https://collector.evil.example",
        "instructionsFilePath": "/paperclip/instances/default/secrets/master.key",
        "env": {"ANTHROPIC_BASE_URL": "https://evil.example", "OK_VAR": "1"}
    }));
    assert_eq!(
        fields(p.check(&hostile, Some(&SCOPE))),
        [
            "podSpecPatch.hostPID",
            "serviceAccountName",
            "namespace",
            "image",
            "initImage",
            "kubeconfig",
            "paperclipApiUrl",
            "instructionsFilePath",
            "env.ANTHROPIC_BASE_URL"
        ]
    );
    // A config that asks for none of it passes, and so do the defaults spelt out.
    assert!(
        p.check(
            &config(json!({"model": "claude-sonnet-4-6", "initImage": DEFAULT_INIT_IMAGE, "env": {"A": "1"},
                           "instructionsFilePath": "/paperclip/instances/default/companies/co-1/agents/agent-1/instructions/AGENTS.md"})),
            Some(&SCOPE)
        )
        .is_ok()
    );
}

#[test]
fn the_message_names_the_field_and_the_setting_that_allows_it() {
    let err = Policy::default()
        .check(&config(json!({"podSpecPatch": {"hostPID": true}})), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "podSpecPatch.hostPID is not allowed by the operator policy; to allow it set \"podSpecPatch\": \
         {\"allowHostNamespaces\": [\"hostPID\"]} in CLAUDE_K8S_POLICY (or the policy file CLAUDE_K8S_POLICY_FILE names)"
    );
    let inline = policy(json!({}));
    let err = inline
        .check(&config(json!({"namespace": "other"})), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "namespace is not allowed by the operator policy; to allow it set \"namespaces\": [\"other\"] in CLAUDE_K8S_POLICY"
    );
    let r = serde_json::to_value(ExecutionResult::from(err.failure())).unwrap();
    assert_eq!(r["errorCode"], "policy_denied");
    assert_eq!(r["errorMeta"]["policyDenied"][0]["field"], "namespace");
    assert!(r["exitCode"].is_null());
    // The setting the message names is what the policy reads: applying it allows the field.
    let file = Source::File("/etc/claude-k8s/policy.yaml".into());
    let allowed = parse(&json!({"namespaces": ["other"]}), file.clone()).unwrap();
    assert!(
        allowed
            .check(&config(json!({"namespace": "other"})), None)
            .is_ok()
    );
    let err = parse(&json!({}), file)
        .unwrap()
        .check(&config(json!({"namespace": "x"})), None)
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("in the policy file /etc/claude-k8s/policy.yaml (CLAUDE_K8S_POLICY_FILE)"),
        "{err}"
    );
}

#[test]
fn allow_lists_take_globs() {
    let p = policy(json!({
        "namespaces": ["paperclip", "agents-*"],
        "images": ["registry.example.com/agents/*"],
        "initImages": ["registry.example.com/busybox:*"],
        "serviceAccountNames": ["agent-runner"],
        "paperclipApiUrls": ["http://paperclip.paperclip.svc:3100"]
    }));
    let ok = config(json!({
        "namespace": "agents-team-a",
        "image": "registry.example.com/agents/claude:2.1",
        "initImage": "registry.example.com/busybox:1.36",
        "serviceAccountName": "agent-runner",
        "paperclipApiUrl": "http://paperclip.paperclip.svc:3100"
    }));
    assert!(p.check(&ok, None).is_ok());
    let bad = config(json!({
        "namespace": "agents",
        "image": "registry.example.com/agents/sub/claude:2.1",
        "serviceAccountName": "paperclip",
        "paperclipApiUrl": "http://paperclip.paperclip.svc:3100@evil.example"
    }));
    assert_eq!(
        fields(p.check(&bad, None)),
        [
            "serviceAccountName",
            "namespace",
            "image",
            "paperclipApiUrl"
        ]
    );
}

#[test]
fn kubeconfig_is_never_read_from_agent_config_unless_listed_and_never_from_the_shared_volume() {
    let p = policy(json!({"kubeconfigs": ["/etc/claude-k8s/*.kubeconfig", "/paperclip/**"]}));
    assert!(
        p.check(
            &config(json!({"kubeconfig": "/etc/claude-k8s/team-a.kubeconfig"})),
            None
        )
        .is_ok()
    );
    // Normalised before matching, so `.` and `//` cannot dodge the list.
    assert!(
        p.check(
            &config(json!({"kubeconfig": "/etc//claude-k8s/./team-a.kubeconfig"})),
            None
        )
        .is_ok()
    );
    for (path, why) in [
        ("/etc/claude-k8s/../shadow", Some("absolute path")),
        ("relative.kubeconfig", Some("absolute path")),
        (
            "/paperclip/instances/default/secrets/master.key",
            Some("shared volume"),
        ),
        ("/etc/kubernetes/admin.conf", None),
    ] {
        let err = p
            .check(&config(json!({"kubeconfig": path})), None)
            .unwrap_err();
        assert_eq!(err.denials[0].field, "kubeconfig");
        match why {
            Some(w) => {
                assert!(err.denials[0].why.as_deref().unwrap().contains(w), "{err}");
                assert_eq!(err.denials[0].setting, None);
            }
            None => assert_eq!(
                err.denials[0].setting.as_deref(),
                Some("\"kubeconfigs\": [\"/etc/kubernetes/admin.conf\"]")
            ),
        }
    }
    // The operator's own --kubeconfig and --namespace (doctor) are always allowed.
    let op = Policy::default().with_operator_choices(Some("/root/.kube/config"), Some("agents"));
    assert!(
        op.check(
            &config(json!({"kubeconfig": "/root/.kube/config", "namespace": "agents"})),
            None
        )
        .is_ok()
    );
}

#[test]
fn env_deny_list_defaults_extensions_and_exceptions() {
    let p = Policy::default();
    for name in [
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_BEDROCK_BASE_URL",
        "ANTHROPIC_VERTEX_BASE_URL",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "NO_PROXY",
        "PAPERCLIP_API_URL",
        "PAPERCLIP_API_KEY",
        "KUBERNETES_SERVICE_HOST",
        "NODE_OPTIONS",
        "LD_PRELOAD",
        "ld_preload",
        "PATH",
    ] {
        assert!(p.env_denied(name), "{name}");
    }
    for name in [
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_MAX_RETRIES",
        "AWS_REGION",
        "MY_PROXY_SETTINGS",
        "PROXY",
    ] {
        assert!(!p.env_denied(name), "{name}");
    }
    let p = policy(
        json!({"env": {"deny": ["GIT_*"], "allow": ["ANTHROPIC_BASE_URL", "PAPERCLIP_API_KEY"]}}),
    );
    assert!(p.env_denied("GIT_SSH_COMMAND"));
    assert!(!p.env_denied("ANTHROPIC_BASE_URL"));
    assert!(
        p.env_denied("ANTHROPIC_BEDROCK_BASE_URL"),
        "the rest of the defaults stay"
    );
    assert!(
        p.env_denied("PAPERCLIP_API_KEY"),
        "the run token is never config's"
    );
    let err = Policy::default()
        .check(
            &config(json!({"env": {"HTTP_PROXY": "http://evil.example:3128"}})),
            None,
        )
        .unwrap_err();
    assert_eq!(err.denials[0].field, "env.HTTP_PROXY");
    assert_eq!(
        err.denials[0].setting.as_deref(),
        Some("\"env\": {\"allow\": [\"HTTP_PROXY\"]}")
    );
    assert!(
        !err.to_string().contains("evil.example"),
        "the value is never quoted: {err}"
    );
}

#[test]
fn instructions_must_be_in_the_agents_own_directory_or_a_listed_root() {
    let p = policy(json!({"instructionsRoots": ["/srv/instructions/**"]}));
    let check = |path: &str| p.check(&config(json!({"instructionsFilePath": path})), Some(&SCOPE));
    assert!(
        check("/paperclip/instances/default/companies/co-1/agents/agent-1/instructions/AGENTS.md")
            .is_ok()
    );
    assert!(check("/srv/instructions/team/AGENTS.md").is_ok());
    for bad in [
        "/paperclip/instances/default/.env",
        "/paperclip/instances/default/companies/co-1/agents/agent-2/instructions/AGENTS.md",
        "/paperclip/instances/default/companies/co-1/agents/agent-1/../agent-2/AGENTS.md",
        "/proc/1/environ",
        "AGENTS.md",
    ] {
        assert_eq!(fields(check(bad)), ["instructionsFilePath"], "{bad}");
    }
    // Without an instance root only the listed roots hold; the environment checks read no instructions.
    let no_root = RunScope {
        instance_root: None,
        ..SCOPE
    };
    assert!(
        p.check(
            &config(json!({"instructionsFilePath": "/srv/instructions/a.md"})),
            Some(&no_root)
        )
        .is_ok()
    );
    assert!(
        Policy::default()
            .check(
                &config(json!({"instructionsFilePath": "/etc/passwd"})),
                None
            )
            .is_ok()
    );
    // Ids that are not plain names never form a directory.
    let odd = RunScope {
        agent_id: "../x",
        ..SCOPE
    };
    assert_eq!(odd.agent_dir(), None);
}

#[test]
fn a_bad_policy_names_the_setting_and_never_quotes_the_text() {
    let secret = "sk-ant-PLEASE-DO-NOT-PRINT";
    for (v, expect) in [
        (
            json!({"podSpecPatch": {"allowHostNamespaces": "yes"}}),
            "podSpecPatch.allowHostNamespaces",
        ),
        (
            json!({"podSpecPatch": {"allowHostNamespaces": ["hostUTS"]}}),
            "podSpecPatch.allowHostNamespaces",
        ),
        (
            json!({"podSpecPatch": {"allowPrivileged": secret}}),
            "podSpecPatch.allowPrivileged",
        ),
        (
            json!({"podSpecPatch": {"allowedKey": ["x"]}}),
            "podSpecPatch.allowedKey",
        ),
        (json!({"images": secret}), "images"),
        (json!({"imagez": []}), "imagez"),
        (json!({"kubeconfigs": ["relative"]}), "kubeconfigs"),
        (json!({"paperclipApiUrls": [secret]}), "paperclipApiUrls"),
        (json!({"env": {"deny": [1]}}), "env.deny"),
        (json!({"env": {"allwo": []}}), "env.allwo"),
        (json!([secret]), "object of settings"),
        (json!({secret: 1}), "not a setting name"),
    ] {
        let err = parse(&v, Source::Inline).unwrap_err().to_string();
        assert!(err.contains(expect), "{v}: {err}");
        assert!(!err.contains(secret), "{err}");
        assert!(
            err.starts_with("invalid operator policy in CLAUDE_K8S_POLICY: "),
            "{err}"
        );
    }
    let err = from_vars(Some(format!("{{\"images\": [\"{secret}\"")), None).unwrap_err();
    assert!(
        err.message.starts_with("not valid JSON (line 1, column"),
        "{err}"
    );
    assert!(!err.to_string().contains(secret));
    let err = from_vars(Some("{}".into()), Some("/x".into())).unwrap_err();
    assert!(err.message.contains("both"), "{err}");
}

#[test]
fn a_policy_file_is_yaml_or_json_and_read_safely() {
    let dir = std::env::temp_dir().join(format!("claude-k8s-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = dir.join("policy.yaml");
    std::fs::write(
        &yaml,
        "# the stage\npodSpecPatch:\n  allowedKeys: [dnsPolicy]\n  allowHostNamespaces: [hostNetwork]\nimages:\n  - local/*\n",
    )
    .unwrap();
    let p = from_vars(None, Some(yaml.display().to_string())).unwrap();
    assert_eq!(p.pod_spec_patch.host_namespaces, ["hostNetwork"]);
    assert_eq!(p.images, [Glob::new("local/*")]);
    assert_eq!(p.source, Source::File(yaml.display().to_string()));
    let json_file = dir.join("policy.json");
    std::fs::write(&json_file, r#"{"namespaces": ["a"]}"#).unwrap();
    assert_eq!(
        from_vars(None, Some(json_file.display().to_string()))
            .unwrap()
            .namespaces,
        [Glob::new("a")]
    );
    // A file that is not a policy: its text (say, a key file someone pointed at) is never quoted.
    let key = dir.join("master.key");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg: [x\n").unwrap();
    let err = from_vars(None, Some(key.display().to_string()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(!err.contains("MIIE") && !err.contains("PRIVATE"), "{err}");
    for (path, expect) in [
        (dir.display().to_string(), "not a regular file"),
        (dir.join("missing").display().to_string(), "cannot open it"),
    ] {
        let err = from_vars(None, Some(path)).unwrap_err().to_string();
        assert!(err.contains(expect), "{err}");
    }
    std::fs::write(&yaml, "").unwrap();
    assert_eq!(
        from_vars(None, Some(yaml.display().to_string()))
            .unwrap()
            .images,
        Vec::<Glob>::new()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_summary_says_what_the_policy_widens() {
    assert!(Policy::default().summary().contains("the built-in default"));
    let p = policy(
        json!({"podSpecPatch": {"allowedKeys": ["dnsPolicy"], "allowHostNamespaces": ["hostNetwork"]}}),
    );
    let s = p.summary();
    assert!(
        s.contains("podSpecPatch keys dnsPolicy") && s.contains("host namespaces hostNetwork"),
        "{s}"
    );
}

/// The stage's policy file parses and allows the configs the stage suites send, and nothing like hostPID.
#[test]
fn the_stage_policy_allows_the_stage_configs_only() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test/stage/policy.yaml");
    let p = from_vars(None, Some(path.into())).unwrap();
    let stage = json!({
        "kubeconfig": "/work/wt/x/target/testcluster/limited.kubeconfig",
        "image": "local/claude-agent:2.1.328",
        "initImage": "local/busybox:1",
        "podSpecPatch": {"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"},
        "paperclipApiUrl": "http://127.0.0.1:3100",
        "env": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:41000", "CLAUDE_CODE_MAX_RETRIES": "1"}
    });
    assert!(p.check(&config(stage.clone()), Some(&SCOPE)).is_ok());
    let mut hostile = stage;
    hostile["podSpecPatch"]["hostPID"] = json!(true);
    hostile["env"]["HTTPS_PROXY"] = json!("http://127.0.0.1:9");
    hostile["kubeconfig"] = json!("/paperclip/target/testcluster/x.kubeconfig");
    assert_eq!(
        fields(p.check(&config(hostile), Some(&SCOPE))),
        ["podSpecPatch.hostPID", "kubeconfig", "env.HTTPS_PROXY"]
    );
}

/// The documented example is a valid policy and means what its comments say.
#[test]
fn the_example_policy_parses() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/policy-example.yaml"
    );
    let p = from_vars(None, Some(path.into())).unwrap();
    assert!(
        p.check(
            &config(json!({"podSpecPatch": {"affinity": {}}, "namespace": "agents-a"})),
            None
        )
        .is_ok()
    );
    assert!(
        p.check(
            &config(json!({"podSpecPatch": {"hostNetwork": true}})),
            None
        )
        .is_err()
    );
    assert!(p.env_denied("GIT_SSH_COMMAND") && p.env_denied("ANTHROPIC_BASE_URL"));
}

/// A run's workspaces: never Paperclip's own data; Paperclip's from its workspace areas; the agent config's only
/// the agent's own, or under `workspaceRoots`; `wholeVolume` lifts the rules (the seed's layout).
#[test]
fn workspaces_are_paperclips_areas_the_agents_own_or_listed_roots() {
    let root = "/paperclip/instances/default";
    let params = |context: Value| -> crate::serve::protocol::ExecuteParams {
        serde_json::from_value(json!({
            "runId": "r", "agent": {"id": "agent-1", "companyId": "co-1"},
            "context": context, "promptBundle": {"instanceRoot": root}
        }))
        .unwrap()
    };
    let ws = |cwd: &str| json!({"paperclipWorkspace": {"cwd": cwd, "source": "project_primary"}});
    let p = Policy::default();
    let none = config(json!({}));
    assert!(
        p.check_run(&params(ws(&format!("{root}/projects/co-1/p/repo"))), &none)
            .is_ok()
    );
    assert!(
        p.check_run(&params(ws(&format!("{root}/workspaces/agent-1"))), &none)
            .is_ok()
    );
    for bad in [
        root.to_owned(),
        format!("{root}/db"),
        format!("{root}/secrets"),
        "/paperclip".into(),
        "/paperclip/.claude/projects".into(),
        "/paperclip/claude-k8s/sessions".into(),
        "/paperclip/instances/other/workspaces/x".into(),
        format!("{root}/workspaces/../db"),
    ] {
        assert_eq!(
            fields(p.check_run(&params(ws(&bad)), &none)),
            ["context.paperclipWorkspace.cwd"],
            "{bad}"
        );
    }
    // Paperclip's context outside its areas, and the config naming another agent's workspace.
    assert_eq!(
        fields(p.check_run(&params(ws("/paperclip/elsewhere/x")), &none)),
        ["context.paperclipWorkspace.cwd"]
    );
    let other = config(json!({"cwd": format!("{root}/workspaces/agent-2")}));
    let denied = p.check_run(&params(json!({})), &other).unwrap_err();
    assert_eq!(denied.denials[0].field, "cwd");
    assert!(denied.to_string().contains("workspaceRoots"), "{denied}");
    let own = config(json!({"cwd": format!("{root}/workspaces/agent-1/sub")}));
    assert!(p.check_run(&params(json!({})), &own).is_ok());
    // Listed roots, and the opt-out.
    let listed = policy(json!({"workspaceRoots": ["/paperclip/elsewhere/*"]}));
    assert!(
        listed
            .check_run(&params(ws("/paperclip/elsewhere/x")), &none)
            .is_ok()
    );
    assert!(
        listed
            .check_run(&params(ws(&format!("{root}/db"))), &none)
            .is_err()
    );
    let whole = policy(json!({"wholeVolume": true}));
    assert!(whole.whole_volume);
    assert!(whole.check_run(&params(ws(root)), &none).is_ok());
    assert!(parse(&json!({"wholeVolume": "yes"}), Source::Inline).is_err());
}
