use super::*;
use crate::run::prepare::pod_facts::tests::paperclip_pod;
use crate::serve::protocol::ExecuteParams;
use serde_json::{Value, json};

pub(super) fn manifests(config: Value, prompt: &str) -> Result<RunManifests, PlanError> {
    manifests_with_mcp(config, prompt, None)
}

pub(super) fn manifests_with_mcp(
    config: Value,
    prompt: &str,
    mcp_config: Option<&str>,
) -> Result<RunManifests, PlanError> {
    manifests_in(
        &View::whole_volume(),
        &PatchRules::default(),
        config,
        prompt,
        mcp_config,
    )
}

/// The params every plan test runs with: an agent-home workspace in the default instance.
pub(super) fn test_params(prompt: &str) -> ExecuteParams {
    serde_json::from_value(json!({
        "runId": "9f1c2d3e-2222-4444-8888-bbbbbbbbbbbb",
        "agent": {"id": "0b6f3c1e-1111-4c3a-9d55-aaaaaaaaaaaa", "companyId": "c0", "name": "Ada"},
        "prompt": {"fresh": prompt},
        "context": {"paperclipWorkspace": {"cwd": "/paperclip/instances/default/workspaces/a", "source": "agent_home"}},
        "paperclipEnv": {"PAPERCLIP_RUN_ID": "9f1c2d3e-2222-4444-8888-bbbbbbbbbbbb"},
        "promptBundle": {"instanceRoot": "/paperclip/instances/default"}
    }))
    .unwrap()
}

/// The manifests of a run with `view` and the policy's patch `rules`.
pub(super) fn manifests_in(
    view: &View,
    rules: &PatchRules,
    config: Value,
    prompt: &str,
    mcp_config: Option<&str>,
) -> Result<RunManifests, PlanError> {
    let params = test_params(prompt);
    let config = AgentConfig::parse(config.as_object().unwrap()).unwrap();
    let facts = PodFacts::from_pod(&paperclip_pod());
    let inv = Invocation::build_with(
        &params,
        &config,
        &facts,
        None,
        &crate::run::prepare::toolkit::Toolkit::without_bundle(&params),
        view,
    );
    let id = RunIdentity {
        agent_id: params.agent.id.clone(),
        run_id: params.run_id.clone(),
        company_id: "c0".into(),
        task_id: Some("t1".into()),
        session_id: None,
    };
    plan(
        &RunPlanInput {
            identity: &id,
            agent_name: "Ada",
            namespace: "paperclip",
            invocation: &inv,
            auth_token: Some("jwt-secret"),
            mcp_config,
            view,
            patch_rules: rules,
        },
        &config,
        &facts,
    )
}

pub(super) fn as_json(job: &Job) -> Value {
    serde_json::to_value(job).unwrap()
}

/// The entry of a JSON list of named things (volumes, mounts, containers) called `name`.
pub(super) fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[test]
fn job_fields_use_the_exact_kubernetes_names() {
    // 1.20 silently drops unknown fields, so the serialized names are checked here, not on the cluster.
    let j = as_json(&manifests(json!({"timeoutSec": 60}), "hi").unwrap().job);
    assert_eq!(j["apiVersion"], "batch/v1");
    assert_eq!(j["kind"], "Job");
    assert_eq!(j["spec"]["backoffLimit"], 0);
    assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 300);
    assert_eq!(j["spec"]["activeDeadlineSeconds"], 60 + 60 + 300);
    let pod = &j["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["terminationGracePeriodSeconds"], 60);
    assert_eq!(pod["volumes"][1]["secret"]["optional"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsUser"], 1000);
    assert_eq!(pod["securityContext"]["runAsGroup"], 1000);
    assert_eq!(pod["securityContext"]["fsGroup"], 1000);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["fsGroupChangePolicy"],
        "OnRootMismatch"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(pod["dnsPolicy"], "None");
    // A prompt that fits the run Secret as it is needs no init container.
    assert!(pod.get("initContainers").is_none());
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "claude");
    assert_eq!(c["image"], "ghcr.io/acme/paperclip:1.2");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["workingDir"], "/paperclip/instances/default/workspaces/a");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["resources"]["requests"]["cpu"], "1000m");
    assert_eq!(c["resources"]["limits"]["memory"], "8Gi");
    // The shell waits for claude (no `exec`): it prints the exit line once claude has exited.
    let script = c["command"][2].as_str().unwrap();
    assert!(
        script.contains("claude \"$@\" < /var/run/claude-k8s/run/prompt.txt &")
            && script.contains("[claude-k8s] claude exited: ")
            && script.ends_with("exit \"$code\"\n"),
        "{script}"
    );
    assert_eq!(c["args"][0], "--print");
    assert!(
        c.get("ports").is_none()
            && c.get("livenessProbe").is_none()
            && c.get("lifecycle").is_none()
    );
}

#[test]
fn only_the_paperclip_pods_whitelist_is_inherited() {
    let j = as_json(&manifests(json!({}), "hi").unwrap().job);
    let pod = &j["spec"]["template"]["spec"];
    assert!(pod.get("nodeName").is_none());
    assert!(pod.get("serviceAccountName").is_none());
    assert_eq!(
        pod["containers"].as_array().unwrap().len(),
        1,
        "no istio sidecar"
    );
    assert!(pod.get("initContainers").is_none(), "no istio-init");
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        volumes,
        ["paperclip-data", "run-secret", "keys", "tmp"],
        "no token volume, no envoy emptyDir (only our /tmp)"
    );
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "paperclip-data"
    );
    let labels = j["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    assert!(!labels.contains_key("app") && !labels.contains_key("pod-template-hash"));
}

#[test]
fn the_token_is_a_secret_ref_and_never_in_the_job() {
    let m = manifests(json!({}), "hi").unwrap();
    let text = serde_json::to_string(&m.job).unwrap();
    assert!(!text.contains("jwt-secret"));
    let env = as_json(&m.job)["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    let key = named(&env, "PAPERCLIP_API_KEY");
    assert_eq!(key["valueFrom"]["secretKeyRef"]["key"], API_KEY_KEY);
    assert_eq!(
        m.secret.data.as_ref().unwrap()[API_KEY_KEY].0,
        b"jwt-secret"
    );
}

#[test]
fn env_is_deduplicated_with_later_layers_winning() {
    let m = manifests(
        json!({"env": {"ANTHROPIC_API_KEY": "override", "EXTRA": "1"}}),
        "hi",
    )
    .unwrap();
    let env = m.job.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let keys: Vec<_> = env
        .iter()
        .filter(|e| e.name == "ANTHROPIC_API_KEY")
        .collect();
    assert_eq!(keys.len(), 1);
    // A secret value of the config travels in the run Secret.
    let from = keys[0].value_from.as_ref().unwrap().secret_key_ref.as_ref();
    assert_eq!(from.unwrap().key, env_secret_key("ANTHROPIC_API_KEY"));
    assert_eq!(
        m.secret.data.as_ref().unwrap()[&env_secret_key("ANTHROPIC_API_KEY")].0,
        b"override"
    );
    assert!(
        env.iter()
            .any(|e| e.name == "MODE" && e.value_from.is_some())
    );
    assert_eq!(
        env.iter()
            .find(|e| e.name == "HOME")
            .unwrap()
            .value
            .as_deref(),
        Some("/paperclip")
    );
}

#[test]
fn a_prompt_that_fits_travels_as_it_is_and_claude_reads_it_from_the_secrets_volume() {
    let m = manifests(json!({}), "hi there").unwrap();
    let data = m.secret.data.as_ref().unwrap();
    assert_eq!(data[PROMPT_KEY].0, b"hi there");
    assert!(!data.contains_key(PACKED_PROMPT_KEY));
    let pod = as_json(&m.job)["spec"]["template"]["spec"].clone();
    assert!(pod.get("initContainers").is_none());
    let mounts = &pod["containers"][0]["volumeMounts"];
    assert!(
        mounts.as_array().unwrap().contains(&json!(
            {"name": "run-secret", "mountPath": "/var/run/claude-k8s/run", "readOnly": true}
        )),
        "{mounts}"
    );
    let secret = named(&pod["volumes"], "run-secret");
    assert_eq!(
        secret["secret"],
        json!({"secretName": m.secret.metadata.name, "defaultMode": 0o440, "optional": true})
    );
}

#[test]
fn a_one_mib_prompt_fits_compressed_and_an_init_container_unpacks_it() {
    let prompt = packed_prompt();
    let m = manifests(json!({}), &prompt).unwrap();
    let data = m.secret.data.as_ref().unwrap();
    assert!(!data.contains_key(PROMPT_KEY));
    let gz = &data[PACKED_PROMPT_KEY].0;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
    assert_eq!(out, prompt);
    let pod = as_json(&m.job)["spec"]["template"]["spec"].clone();
    let init = &pod["initContainers"][0];
    assert_eq!(init["name"], "write-prompt");
    assert_eq!(init["image"], "busybox:1.36");
    assert_eq!(
        init["command"][2],
        "gunzip -c /var/run/claude-k8s/run/prompt.gz > /var/run/claude-k8s/prompt/prompt.txt"
    );
    let claude = &pod["containers"][0];
    assert!(
        claude["command"][2]
            .as_str()
            .unwrap()
            .contains("claude \"$@\" < /var/run/claude-k8s/prompt/prompt.txt &")
    );
    let prompt_mount = named(&claude["volumeMounts"], "prompt");
    assert_eq!(prompt_mount["readOnly"], true);
}

#[test]
fn a_prompt_too_large_even_compressed_is_refused_with_its_size() {
    // Random-looking text gzip cannot shrink below 1 MiB.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let prompt: String = (0..1_600_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    match manifests(json!({}), &prompt) {
        Err(PlanError::PromptTooLarge { compressed }) => assert!(compressed > 1024 * 1024),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pod_spec_patch_is_applied_last() {
    // hostNetwork survives the re-applied security only where the operator policy allows it.
    let rules = PatchRules {
        host_namespaces: vec!["hostNetwork".into()],
        ..PatchRules::default()
    };
    let m = manifests_in(
        &View::whole_volume(),
        &rules,
        json!({"podSpecPatch": {"hostNetwork": true, "runtimeClassName": "gvisor"}}),
        "hi",
        None,
    )
    .unwrap();
    let pod = m.job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.runtime_class_name.as_deref(), Some("gvisor"));
}

#[test]
fn user_labels_and_scheduling_fields() {
    let m = manifests(
        json!({"labels": {"team": "core"}, "nodeSelector": {"pool": "agents"},
               "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
               "serviceAccountName": "agent-sa"}),
        "hi",
    )
    .unwrap();
    let j = as_json(&m.job);
    assert_eq!(j["metadata"]["labels"]["team"], "core");
    assert_eq!(j["metadata"]["labels"]["paperclip.io/task-id"], "t1");
    let pod = &j["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["pool"], "agents");
    assert_eq!(pod["tolerations"][0]["key"], "gpu");
    assert_eq!(pod["serviceAccountName"], "agent-sa");
    assert_eq!(pod["automountServiceAccountToken"], true);
}

pub(super) fn pod_of(config: Value) -> Value {
    as_json(&manifests(config, "hi").unwrap().job)["spec"]["template"]["spec"].clone()
}

/// A prompt over 1 MiB that gzip packs well: it travels packed, so its pod has the `write-prompt` init container.
pub(super) fn packed_prompt() -> String {
    let prompt: String = (0..1024 * 1024 / 40)
        .map(|i| format!("line {i:08} of a long task description........\n"))
        .collect();
    assert!(prompt.len() >= 1024 * 1024);
    prompt
}

/// The pod of a run whose prompt travels packed (with the init container).
pub(super) fn packed_pod_of(config: Value) -> Value {
    as_json(&manifests(config, &packed_prompt()).unwrap().job)["spec"]["template"]["spec"].clone()
}

/// The init container and the claude container of a pod with both (see [`packed_pod_of`]).
pub(super) fn both_containers(pod: &Value) -> [&Value; 2] {
    assert_eq!(pod["initContainers"][0]["name"], "write-prompt");
    [&pod["initContainers"][0], &pod["containers"][0]]
}

// Safe inheritance and the security context, one rule per test, on the real-looking pod of
// pod_facts::tests::paperclip_pod (istio sidecar and init, probes, ports, lifecycle hook, projected and legacy
// token volumes, selector labels, nodeName, serviceAccountName).

mod fields;
mod isolation;
mod rules;
