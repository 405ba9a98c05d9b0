//! An agent's adapterConfig, as untrusted as it is (board users and hire requests write it): any JSON object is
//! parsed, and a config that parses is planned into Claude's invocation, the Job and the deadlines of its run.
//! Nothing panics or overflows, whatever the numbers.
#![no_main]

use std::time::{Duration, Instant};

use claude_k8s::k8s::labels::RunIdentity;
use claude_k8s::policy::PatchRules;
use claude_k8s::run::follow::Limits;
use claude_k8s::run::follow::machine::{Follow, Input};
use claude_k8s::run::plan::invocation::{Invocation, resumable_session};
use claude_k8s::run::plan::{RunPlanInput, plan};
use claude_k8s::run::prepare::config::AgentConfig;
use claude_k8s::run::prepare::pod_facts::PodFacts;
use claude_k8s::run::prepare::toolkit::Toolkit;
use claude_k8s::run::prepare::view;
use claude_k8s::serve::protocol::ExecuteParams;
use claude_k8s::settings::Settings;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(raw)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let config = match AgentConfig::parse(&raw) {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    // The config also stands for the run's context and saved session: the same untrusted shapes.
    let params: ExecuteParams = serde_json::from_value(json!({
        "runId": "run-1",
        "agent": {"id": "agent-1", "companyId": "c", "name": "n"},
        "prompt": {"fresh": "hi"},
        "context": raw.get("context").cloned().unwrap_or(json!({})),
        "runtime": {"sessionParams": raw.get("sessionParams").filter(|v| v.is_object()).cloned()}
    }))
    .unwrap_or_default();
    let toolkit = Toolkit::without_bundle(&params);
    // The per-run view of the volume, as the default policy plans it (no whole-volume opt-out).
    let view = view::of_run(&params, &config, &toolkit, false);
    let _ = resumable_session(&params, &config, &toolkit, &view);
    let facts = PodFacts::default();
    let invocation = Invocation::build(&params, &config, &facts, None);
    let identity = RunIdentity {
        agent_id: params.agent.id.clone(),
        run_id: params.run_id.clone(),
        company_id: "c".into(),
        task_id: None,
        session_id: None,
    };
    let input = RunPlanInput {
        identity: &identity,
        agent_name: "n",
        namespace: "ns",
        invocation: &invocation,
        auth_token: Some("token"),
        mcp_config: None,
        view: &view,
        patch_rules: &PatchRules::default(),
    };
    if let Ok(manifests) = plan(&input, &config, &facts) {
        serde_json::to_vec(&manifests.job).unwrap();
    }
    // The run's deadlines, as the run makes them from the config.
    let settings = Settings::default();
    let limits = Limits {
        pod: settings.pod_limits(),
        result_grace: settings.result_grace(),
        grace: Duration::from_secs(config.grace_sec),
        timeout: (config.timeout_sec > 0).then(|| Duration::from_secs(config.timeout_sec)),
    };
    let now = Instant::now();
    let mut follow = Follow::new("job", limits, now);
    for input in [Input::Tick, Input::Cancel, Input::Tick] {
        let _ = follow.step(input, now);
    }
});
