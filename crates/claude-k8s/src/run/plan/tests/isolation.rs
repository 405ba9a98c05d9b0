//! The pod's isolation as the manifests carry it, field by field with Kubernetes' exact names (1.20 drops a
//! misspelt field silently): the run's view of the volume as `subPath` mounts, the read-only root filesystem, the
//! security context re-applied after a `podSpecPatch`, secret env values as `secretKeyRef`s.

use super::*;
use crate::run::prepare::toolkit::Toolkit;
use crate::run::prepare::view;
use serde_json::json;

const ROOT: &str = "/paperclip/instances/default";

/// The view `of_run` gives the test run (its agent-home workspace and its own Claude home).
fn run_view(config: &Value) -> View {
    let params = test_params("hi");
    let config = AgentConfig::parse(config.as_object().unwrap()).unwrap();
    view::of_run(&params, &config, &Toolkit::without_bundle(&params), false)
}

fn pod_in(view: &View, rules: &PatchRules, config: Value) -> Value {
    let m = manifests_in(view, rules, config, "hi", None).unwrap();
    as_json(&m.job)["spec"]["template"]["spec"].clone()
}

/// The pod of a run with `view` whose prompt travels packed (with the init container).
fn packed_pod_in(view: &View) -> Value {
    let m = manifests_in(
        view,
        &PatchRules::default(),
        json!({}),
        &packed_prompt(),
        None,
    )
    .unwrap();
    as_json(&m.job)["spec"]["template"]["spec"].clone()
}

fn env_of<'a>(container: &'a Value, name: &str) -> &'a Value {
    named(&container["env"], name)
}

/// `(mountPath, subPath, readOnly)` of the claim's mounts in a container.
fn claim_mounts(container: &Value) -> Vec<(String, Value, Value)> {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "paperclip-data")
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_owned(),
                m["subPath"].clone(),
                m["readOnly"].clone(),
            )
        })
        .collect()
}

#[test]
fn the_claim_is_mounted_only_as_the_runs_directories_at_their_own_paths() {
    let view = run_view(&json!({}));
    let home = format!("{ROOT}/companies/c0/claude-k8s-homes/0b6f3c1e-1111-4c3a-9d55-aaaaaaaaaaaa");
    assert_eq!(view.home, home);
    let pod = pod_in(&view, &PatchRules::default(), json!({}));
    let claude = &pod["containers"][0];
    let rel = |p: &str| json!(p.strip_prefix("/paperclip/").unwrap());
    assert_eq!(
        claim_mounts(claude),
        [
            (
                format!("{ROOT}/workspaces/a"),
                rel(&format!("{ROOT}/workspaces/a")),
                Value::Null
            ),
            (home.clone(), rel(&home), Value::Null),
        ]
    );
    // Nothing at the volume root, nothing of the instance root, and the init container never sees the claim.
    let text = claude["volumeMounts"].to_string();
    assert!(!text.contains("\"mountPath\":\"/paperclip\""), "{text}");
    let packed = packed_pod_in(&view);
    assert!(claim_mounts(both_containers(&packed)[0]).is_empty());
    assert_eq!(env_of(claude, "HOME")["value"], json!(home));
    assert_eq!(claude["workingDir"], format!("{ROOT}/workspaces/a"));
}

#[test]
fn read_only_parts_of_the_view_are_read_only_mounts() {
    let mut view = run_view(&json!({}));
    let bundle = format!("{ROOT}/companies/c0/claude-k8s-prompt-cache/k1");
    view.mounts.push(view::ViewMount {
        path: bundle.clone(),
        read_only: true,
        what: "prompt bundle",
    });
    let pod = pod_in(&view, &PatchRules::default(), json!({}));
    let mounts = claim_mounts(&pod["containers"][0]);
    let m = mounts.iter().find(|m| m.0 == bundle).unwrap();
    assert_eq!(m.1, json!(bundle.strip_prefix("/paperclip/").unwrap()));
    assert_eq!(m.2, json!(true));
    // The read-write ones leave `readOnly` out (Kubernetes' default, false).
    assert!(
        mounts
            .iter()
            .filter(|m| m.0 != bundle)
            .all(|m| m.2.is_null())
    );
}

#[test]
fn the_seed_layout_mounts_the_whole_claim_with_the_shared_home() {
    let pod = pod_of(json!({}));
    let claude = &pod["containers"][0];
    assert_eq!(
        claim_mounts(claude),
        [("/paperclip".to_owned(), Value::Null, Value::Null)]
    );
    assert_eq!(env_of(claude, "HOME")["value"], "/paperclip");
}

#[test]
fn a_server_that_mounts_part_of_the_claim_gives_each_sub_path_below_its_own() {
    let view = run_view(&json!({}));
    let mounts = super::super::volumes::data_mounts(&view, Some("/tenant-a/"));
    assert_eq!(mounts[0].mount_path, format!("{ROOT}/workspaces/a"));
    assert_eq!(
        mounts[0].sub_path.as_deref(),
        Some("tenant-a/instances/default/workspaces/a")
    );
    let whole = super::super::volumes::data_mounts(&View::whole_volume(), Some("tenant-a"));
    assert_eq!(whole[0].mount_path, "/paperclip");
    assert_eq!(whole[0].sub_path.as_deref(), Some("tenant-a"));
}

#[test]
fn the_root_filesystem_is_read_only_with_an_empty_dir_tmp() {
    let pod = pod_in(&run_view(&json!({})), &PatchRules::default(), json!({}));
    let packed = packed_pod_in(&run_view(&json!({})));
    for c in both_containers(&packed) {
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{c}");
    }
    let claude = &pod["containers"][0];
    let tmp = claude["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/tmp")
        .unwrap();
    let volume = named(&pod["volumes"], tmp["name"].as_str().unwrap());
    assert_eq!(volume["emptyDir"], json!({}));
}

#[test]
fn a_patch_that_leaves_out_or_loosens_the_security_context_gets_it_back() {
    let view = run_view(&json!({}));
    let patch = json!({"podSpecPatch": {
        "securityContext": {"runAsUser": 0, "runAsNonRoot": false},
        "hostPID": true,
        "containers": [
            {"name": "claude", "securityContext": {"privileged": true, "runAsUser": 0,
                                                  "capabilities": {"add": ["SYS_ADMIN"]}}},
            {"name": "extra", "image": "local/x:1"}
        ]
    }});
    let pod = pod_in(&view, &PatchRules::default(), patch.clone());
    let ours = pod_in(&view, &PatchRules::default(), json!({}));
    assert_eq!(pod["securityContext"], ours["securityContext"]);
    assert!(
        pod["hostPID"].is_null() || pod["hostPID"] == false,
        "{}",
        pod["hostPID"]
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    for c in containers {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}");
        assert_eq!(sc["runAsNonRoot"], true, "{c}");
        assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}), "{c}");
        assert!(sc["privileged"].is_null(), "{c}");
        assert_ne!(sc["runAsUser"], 0, "{c}");
    }
    assert_eq!(
        containers[0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    // What the operator allows stays as the patch set it.
    let rules = PatchRules {
        privileged: true,
        host_namespaces: vec!["hostPID".into()],
        ..PatchRules::default()
    };
    let allowed = pod_in(&view, &rules, patch);
    assert_eq!(allowed["hostPID"], true);
    assert_eq!(
        allowed["containers"][0]["securityContext"]["privileged"],
        true
    );
}

#[test]
fn secret_env_values_of_the_config_travel_in_the_run_secret() {
    let config = json!({"env": {"GITHUB_TOKEN": "ghp-very-secret", "PLAIN_SETTING": "visible"}});
    let view = run_view(&config);
    let m = manifests_in(&view, &PatchRules::default(), config, "hi", None).unwrap();
    let job = serde_json::to_string(&m.job).unwrap();
    assert!(!job.contains("ghp-very-secret"), "{job}");
    let pod = &as_json(&m.job)["spec"]["template"]["spec"];
    let claude = &pod["containers"][0];
    let token = env_of(claude, "GITHUB_TOKEN");
    assert!(token["value"].is_null());
    let key = env_secret_key("GITHUB_TOKEN");
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        json!({"name": m.secret.metadata.name.clone().unwrap(), "key": key, "optional": false})
    );
    assert_eq!(
        m.secret.data.as_ref().unwrap()[&key].0,
        b"ghp-very-secret".to_vec()
    );
    assert_eq!(env_of(claude, "PLAIN_SETTING")["value"], "visible");
    // A name that is no valid Secret key still gets one.
    assert!(env_secret_key("MY TOKEN").starts_with("env-"));
}
