//! Issue 4 on the real stage: environment checks (through `claude-k8s serve` and `claude-k8s doctor`), config
//! fields whose effect only the cluster shows, bad values that create nothing, and Jobs in another namespace.
//!
//! Needs `make cluster-up`; `#[ignore]`d otherwise. Each test makes the stage objects it needs itself, idempotently
//! and without restarting the stage (server-side apply as admin):
//!
//! * user `nolog`: the adapter's Role as deployed minus its `pods/log` rule (Role `paperclip-adapter-nolog`);
//! * user `crossns`: the adapter's Role in `paperclip` (self-introspection) and in namespace `paperclip-jobs`, plus
//!   deploy/clusterrole-cross-namespace.yaml, i.e. the README's cross-namespace recipe; `paperclip-jobs` has its own
//!   claim `paperclip-data`, bound to a second hostPath volume at /paperclip;
//! * pod `paperclip/paperclip-rwo`: a second stand-in Paperclip pod whose /paperclip is the ReadWriteOnce claim
//!   `paperclip-rwo`.
//!
//! The extra users are reached by impersonation: a kubeconfig of `admin` with `as: <user>` (admin is in
//! system:masters, so it may impersonate; every request and every SelfSubjectAccessReview is then the user's).

mod stage;

use std::fmt::Debug;
use std::time::Duration;

use claude_k8s::checks::PERMISSIONS;
use fake_anthropic::FakeAnthropic;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use stage::{Serve, Stage};

const JOBS_NS: &str = "paperclip-jobs";
/// A Service URL, so the API-URL check passes (the stand-in's own is loopback, which warns).
const SERVICE_URL: &str = "http://paperclip.paperclip.svc:3100";

// ---------------------------------------------------------------------------------------------------------------
// Stage fixtures

async fn apply<K>(api: &Api<K>, value: Value) -> K
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = value["metadata"]["name"].as_str().unwrap().to_owned();
    let obj: K = serde_json::from_value(value).unwrap();
    api.patch(
        &name,
        &PatchParams::apply("claude-k8s-tests").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

/// Polls (bounded) until `check` is true.
async fn wait_until<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A kubeconfig that acts as `user` (admin's credentials, `as: user`), in target/testcluster/.
fn impersonating_kubeconfig(stage: &Stage, user: &str) -> String {
    let mut kc = Kubeconfig::read_from(&stage.admin_kubeconfig).unwrap();
    for named in &mut kc.auth_infos {
        named.auth_info.as_mut().unwrap().impersonate = Some(user.to_owned());
    }
    let path = stage::repo_root().join(format!("target/testcluster/{user}.kubeconfig"));
    // JSON is YAML; written whole then renamed, since tests running in parallel may write it at once.
    let tmp = path.with_extension(format!("tmp{}", stage::short_id()));
    std::fs::write(&tmp, serde_json::to_vec(&kc).unwrap()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path.to_string_lossy().into_owned()
}

async fn client_for(kubeconfig: &str) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    Client::try_from(
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap()
}

/// Waits until RBAC lets the kubeconfig's user do `verb` on `resource` in `namespace` (bindings take effect
/// asynchronously in the authorizer's cache).
async fn wait_allowed(kubeconfig: &str, namespace: &str, group: &str, resource: &str, verb: &str) {
    let client = client_for(kubeconfig).await;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client);
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": namespace, "group": group, "resource": resource, "verb": verb}}
    }))
    .unwrap();
    wait_until(
        &format!("{kubeconfig} may {verb} {resource} in {namespace}"),
        20,
        || {
            let (reviews, review) = (reviews.clone(), review.clone());
            async move {
                reviews
                    .create(&PostParams::default(), &review)
                    .await
                    .is_ok_and(|r| r.status.is_some_and(|s| s.allowed))
            }
        },
    )
    .await;
}

fn user_binding(name: &str, namespace: &str, user: &str, role_kind: &str, role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": name, "namespace": namespace},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}})
}

fn user_cluster_binding(name: &str, user: &str, cluster_role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": name},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role}})
}

/// The deployed Role (deploy/role.yaml as applied by the stage) as a value to re-apply elsewhere.
async fn deployed_role_rules(client: &Client) -> Value {
    let role = Api::<Role>::namespaced(client.clone(), "paperclip")
        .get("paperclip-adapter")
        .await
        .unwrap();
    serde_json::to_value(role.rules.unwrap()).unwrap()
}

/// User `nolog`: everything the adapter's Role grants except `pods/log`. Returns its kubeconfig.
async fn nolog_user(stage: &Stage) -> String {
    let client = stage.admin_client().await;
    let rules = deployed_role_rules(&client).await;
    let all = rules.as_array().unwrap();
    let kept: Vec<Value> = all
        .iter()
        .filter(|r| {
            !r["resources"]
                .as_array()
                .unwrap()
                .contains(&json!("pods/log"))
        })
        .cloned()
        .collect();
    assert_eq!(
        kept.len() + 1,
        all.len(),
        "exactly one rule grants pods/log"
    );
    apply(
        &Api::<Role>::namespaced(client.clone(), "paperclip"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "paperclip-adapter-nolog", "namespace": "paperclip"}, "rules": kept}),
    )
    .await;
    apply(
        &Api::<RoleBinding>::namespaced(client.clone(), "paperclip"),
        user_binding(
            "nolog-paperclip-adapter",
            "paperclip",
            "nolog",
            "Role",
            "paperclip-adapter-nolog",
        ),
    )
    .await;
    apply(
        &Api::<ClusterRoleBinding>::all(client),
        user_cluster_binding(
            "nolog-paperclip-self-review",
            "nolog",
            "paperclip-self-review",
        ),
    )
    .await;
    let kubeconfig = impersonating_kubeconfig(stage, "nolog");
    wait_allowed(
        &kubeconfig,
        "paperclip",
        "",
        "persistentvolumeclaims",
        "get",
    )
    .await;
    kubeconfig
}

/// Pod `paperclip/paperclip-rwo`: the stand-in Paperclip pod again, with a ReadWriteOnce claim at /paperclip.
async fn rwo_stand_in(stage: &Stage) -> &'static str {
    let client = stage.admin_client().await;
    apply(
        &Api::<PersistentVolume>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "paperclip-rwo"},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "manual",
                        "claimRef": {"namespace": "paperclip", "name": "paperclip-rwo"},
                        "hostPath": {"path": "/paperclip", "type": "Directory"}}}),
    )
    .await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "paperclip");
    apply(
        &pvcs,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "paperclip-rwo", "namespace": "paperclip"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                        "volumeName": "paperclip-rwo", "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    wait_until("PVC paperclip-rwo Bound", 60, || {
        let pvcs = pvcs.clone();
        async move {
            pvcs.get("paperclip-rwo")
                .await
                .is_ok_and(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Bound"))
        }
    })
    .await;
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "paperclip-rwo", "namespace": "paperclip",
                     "labels": {"app.kubernetes.io/name": "paperclip-rwo"}},
        "spec": {"hostNetwork": true, "terminationGracePeriodSeconds": 5, "automountServiceAccountToken": false,
                 "containers": [{"name": "paperclip", "image": stage.agent_image, "imagePullPolicy": "IfNotPresent",
                                 "command": ["/bin/sleep-forever"],
                                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                 "env": [{"name": "PAPERCLIP_API_URL", "value": "http://127.0.0.1:3100"},
                                         {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef":
                                             {"name": "paperclip-secrets", "key": "ANTHROPIC_API_KEY"}}}],
                                 "volumeMounts": [{"name": "data", "mountPath": "/paperclip"}]}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "paperclip-rwo"}}]}
    }))
    .unwrap();
    match Api::<Pod>::namespaced(client, "paperclip")
        .create(&PostParams::default(), &pod)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create pod paperclip-rwo: {e}"),
    }
    "paperclip/paperclip-rwo"
}

/// Namespace `paperclip-jobs` set up as the README's cross-namespace recipe says, and user `crossns` bound as the
/// Deployment's service account would be. Returns the user's kubeconfig.
async fn cross_namespace_user(stage: &Stage) -> String {
    let client = stage.admin_client().await;
    apply(
        &Api::<Namespace>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": JOBS_NS}}),
    )
    .await;
    apply(
        &Api::<PersistentVolume>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "paperclip-jobs-data"},
               "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"],
                        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "manual",
                        "claimRef": {"namespace": JOBS_NS, "name": "paperclip-data"},
                        "hostPath": {"path": "/paperclip", "type": "Directory"}}}),
    )
    .await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), JOBS_NS);
    apply(
        &pvcs,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "paperclip-data", "namespace": JOBS_NS},
               "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual",
                        "volumeName": "paperclip-jobs-data", "resources": {"requests": {"storage": "10Gi"}}}}),
    )
    .await;
    // Step 1 of the recipe: the adapter's Role, unchanged, in the Jobs' namespace.
    let rules = deployed_role_rules(&client).await;
    apply(
        &Api::<Role>::namespaced(client.clone(), JOBS_NS),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "paperclip-adapter", "namespace": JOBS_NS}, "rules": rules}),
    )
    .await;
    // Step 2: deploy/clusterrole-cross-namespace.yaml exactly as an operator applies it.
    let out = std::process::Command::new(stage::stage_env("KUBECTL"))
        .args(["--kubeconfig", &stage.admin_kubeconfig, "apply", "-f"])
        .arg(stage::repo_root().join("deploy/clusterrole-cross-namespace.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The Secret and ConfigMap the Paperclip pod's env and volumes refer to, copied as the check asks.
    let secret = Api::<Secret>::namespaced(client.clone(), "paperclip")
        .get("paperclip-secrets")
        .await
        .unwrap();
    apply(
        &Api::<Secret>::namespaced(client.clone(), JOBS_NS),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "paperclip-secrets", "namespace": JOBS_NS},
               "type": secret.type_, "data": secret.data}),
    )
    .await;
    let config_map = Api::<ConfigMap>::namespaced(client.clone(), "paperclip")
        .get("paperclip-config")
        .await
        .unwrap();
    apply(
        &Api::<ConfigMap>::namespaced(client.clone(), JOBS_NS),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "paperclip-config", "namespace": JOBS_NS},
               "data": config_map.data}),
    )
    .await;
    for ns in ["paperclip", JOBS_NS] {
        apply(
            &Api::<RoleBinding>::namespaced(client.clone(), ns),
            user_binding(
                "crossns-paperclip-adapter",
                ns,
                "crossns",
                "Role",
                "paperclip-adapter",
            ),
        )
        .await;
    }
    let crbs = Api::<ClusterRoleBinding>::all(client.clone());
    apply(
        &crbs,
        user_cluster_binding(
            "crossns-paperclip-self-review",
            "crossns",
            "paperclip-self-review",
        ),
    )
    .await;
    apply(
        &crbs,
        user_cluster_binding(
            "crossns-paperclip-cross-namespace",
            "crossns",
            "paperclip-cross-namespace",
        ),
    )
    .await;
    wait_until("PVC paperclip-jobs/paperclip-data Bound", 60, || {
        let pvcs = pvcs.clone();
        async move {
            pvcs.get("paperclip-data")
                .await
                .is_ok_and(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Bound"))
        }
    })
    .await;
    // Pods are admitted only once the namespace's default ServiceAccount exists.
    let sas: Api<ServiceAccount> = Api::namespaced(client, JOBS_NS);
    wait_until("ServiceAccount paperclip-jobs/default", 30, || {
        let sas = sas.clone();
        async move { sas.get("default").await.is_ok() }
    })
    .await;
    let kubeconfig = impersonating_kubeconfig(stage, "crossns");
    wait_allowed(&kubeconfig, JOBS_NS, "batch", "jobs", "create").await;
    wait_allowed(&kubeconfig, "paperclip", "", "pods", "get").await;
    kubeconfig
}

// ---------------------------------------------------------------------------------------------------------------
// Assertion helpers

fn checks(result: &Value) -> &Vec<Value> {
    result["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {result:#}"))
}

fn check<'a>(result: &'a Value, code: &str) -> &'a Value {
    checks(result)
        .iter()
        .find(|c| c["code"] == code)
        .unwrap_or_else(|| panic!("no check {code} in {result:#}"))
}

fn codes_at(result: &Value, level: &str) -> Vec<String> {
    checks(result)
        .iter()
        .filter(|c| c["level"] == level)
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_every_permission_allowed(result: &Value) {
    for p in PERMISSIONS {
        let c = check(result, &p.code());
        assert_eq!(c["level"], "info", "{c:#}");
        assert!(
            c["message"].as_str().unwrap().starts_with("allowed:"),
            "{c:#}"
        );
    }
}

fn doctor(args: &[&str], self_pod: &str) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_claude-k8s"))
        .arg("doctor")
        .args(args)
        .env("CLAUDE_K8S_SELF_POD", self_pod)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run claude-k8s doctor");
    (out.status, String::from_utf8(out.stdout).unwrap())
}

async fn agent_objects<K>(stage: &Stage, namespace: &str, agent: &str) -> Vec<String>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(stage.admin_client().await, namespace)
        .list(&ListParams::default().labels(&format!("paperclip.io/agent-id={agent}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect()
}

/// No Job, pod or run Secret of the agent exists in `namespace`.
async fn assert_nothing_created(stage: &Stage, namespace: &str, agent: &str) {
    assert_eq!(
        agent_objects::<Job>(stage, namespace, agent).await,
        Vec::<String>::new()
    );
    assert_eq!(
        agent_objects::<Pod>(stage, namespace, agent).await,
        Vec::<String>::new()
    );
    assert_eq!(
        agent_objects::<Secret>(stage, namespace, agent).await,
        Vec::<String>::new()
    );
}

/// Deletes a retained Job of the agent and waits (bounded) until its pods and Secret are gone.
async fn delete_retained(stage: &Stage, namespace: &str, agent: &str) {
    let client = stage.admin_client().await;
    for name in agent_objects::<Job>(stage, namespace, agent).await {
        Api::<Job>::namespaced(client.clone(), namespace)
            .delete(&name, &DeleteParams::background())
            .await
            .unwrap();
    }
    for name in agent_objects::<Secret>(stage, namespace, agent).await {
        let _ = Api::<Secret>::namespaced(client.clone(), namespace)
            .delete(&name, &DeleteParams::default())
            .await;
    }
    wait_until("the retained Job's pods are gone", 90, || async {
        agent_objects::<Pod>(stage, namespace, agent)
            .await
            .is_empty()
            && agent_objects::<Job>(stage, namespace, agent)
                .await
                .is_empty()
    })
    .await;
}

fn the_pod(job_pods: &[Pod]) -> Value {
    assert_eq!(job_pods.len(), 1, "one pod per Job");
    serde_json::to_value(&job_pods[0]).unwrap()
}

async fn agent_pods(stage: &Stage, namespace: &str, agent: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(stage.admin_client().await, namespace)
        .list(&ListParams::default().labels(&format!("paperclip.io/agent-id={agent}")))
        .await
        .unwrap()
        .items
}

// ---------------------------------------------------------------------------------------------------------------
// Environment checks

/// testEnvironment passes with the admin and with the limited (least-privilege, deploy/role.yaml) kubeconfig; a
/// loopback API URL makes it `warn`; `claude-k8s doctor` runs the same checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn environment_checks_pass_with_the_admin_and_the_limited_kubeconfig() {
    let stage = Stage::load();
    let mut serve = Serve::start(&stage);
    for (who, kubeconfig) in [
        ("limited", &stage.limited_kubeconfig),
        ("admin", &stage.admin_kubeconfig),
    ] {
        let r = serve
            .test_environment(&json!({"kubeconfig": kubeconfig, "paperclipApiUrl": SERVICE_URL}))
            .await;
        assert_eq!(r["adapterType"], "claude_k8s");
        assert_eq!(r["status"], "pass", "{who}: {r:#}");
        assert!(
            r["testedAt"].as_str().is_some_and(|t| t.len() >= 20),
            "{r:#}"
        );
        assert_every_permission_allowed(&r);
        for code in [
            "k8s_api_reachable",
            "k8s_self_pod",
            "k8s_pvc_rwx",
            "k8s_image",
            "claude_api_key_present",
            "paperclip_api_url",
        ] {
            assert_eq!(check(&r, code)["level"], "info", "{who}: {code}: {r:#}");
        }
        assert!(
            check(&r, "k8s_image")["message"]
                .as_str()
                .unwrap()
                .contains(&stage.agent_image),
            "{r:#}"
        );
        // admin may read Namespaces; limited may not (it has no cross-namespace ClusterRole), which is only
        // informational for the pod's own namespace.
        let ns = if who == "admin" {
            "k8s_namespace_exists"
        } else {
            "k8s_namespace_unverified"
        };
        assert_eq!(check(&r, ns)["level"], "info", "{who}: {r:#}");
    }
    // A namespace that does not exist (admin may read Namespaces, so this is certain).
    let r = serve
        .test_environment(
            &json!({"kubeconfig": stage.admin_kubeconfig, "namespace": "no-such-namespace",
                                  "paperclipApiUrl": SERVICE_URL}),
        )
        .await;
    assert_eq!(r["status"], "fail", "{r:#}");
    let c = check(&r, "k8s_namespace_missing");
    assert_eq!(c["level"], "error");
    assert!(
        c["hint"]
            .as_str()
            .unwrap()
            .contains("adapterConfig.namespace"),
        "{c:#}"
    );
    // The stand-in's own PAPERCLIP_API_URL is loopback: a warning, with the field to set.
    let r = serve
        .test_environment(&json!({"kubeconfig": stage.limited_kubeconfig}))
        .await;
    assert_eq!(r["status"], "warn", "{r:#}");
    assert_eq!(
        codes_at(&r, "warn"),
        ["paperclip_api_url_loopback"],
        "{r:#}"
    );
    assert!(
        check(&r, "paperclip_api_url_loopback")["hint"]
            .as_str()
            .unwrap()
            .contains("paperclipApiUrl")
    );
    serve.shutdown().await;

    let (status, out) = doctor(
        &["--kubeconfig", &stage.limited_kubeconfig, "--json"],
        "paperclip/paperclip",
    );
    assert!(status.success(), "doctor exit {status}: {out}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["status"], "warn", "{r:#}");
    assert_every_permission_allowed(&r);
    assert_eq!(codes_at(&r, "error"), Vec::<String>::new(), "{r:#}");
}

/// A service account without `pods/log` fails the check, and only that check, with the exact Role rule to add;
/// `claude-k8s doctor` prints the rule and exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_user_without_pods_log_is_told_the_exact_rule_to_add() {
    let stage = Stage::load();
    let kubeconfig = nolog_user(&stage).await;
    let mut serve = Serve::start(&stage);
    let r = serve
        .test_environment(&json!({"kubeconfig": kubeconfig, "paperclipApiUrl": SERVICE_URL}))
        .await;
    serve.shutdown().await;
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(codes_at(&r, "error"), ["k8s_rbac_pods_log_get"], "{r:#}");
    let c = check(&r, "k8s_rbac_pods_log_get");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .starts_with("denied: get pods/log in namespace paperclip"),
        "{c:#}"
    );
    assert_eq!(
        c["hint"],
        "add this rule to the adapter's Role (deploy/role.yaml): - apiGroups: [\"\"]  resources: [\"pods/log\"]  verbs: [\"get\"]"
    );

    let (status, out) = doctor(&["--kubeconfig", &kubeconfig], "paperclip/paperclip");
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL k8s_rbac_pods_log_get"), "{out}");
    assert!(
        out.contains("fix: add this rule to the adapter's Role (deploy/role.yaml): - apiGroups: [\"\"]  resources: [\"pods/log\"]  verbs: [\"get\"]"),
        "{out}"
    );
    assert_eq!(out.matches("FAIL ").count(), 1, "{out}");
    assert!(out.trim_end().ends_with("status: fail"), "{out}");
}

/// A Paperclip pod whose /paperclip is a ReadWriteOnce claim fails `k8s_pvc_not_rwx`, naming the claim, its
/// access modes and what to use instead; the doctor says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_readwriteonce_claim_fails_the_check_with_what_to_change() {
    let stage = Stage::load();
    let self_pod = rwo_stand_in(&stage).await;
    let mut serve = Serve::start_as_pod(&stage, self_pod);
    let r = serve
        .test_environment(
            &json!({"kubeconfig": stage.limited_kubeconfig, "paperclipApiUrl": SERVICE_URL}),
        )
        .await;
    serve.shutdown().await;
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(codes_at(&r, "error"), ["k8s_pvc_not_rwx"], "{r:#}");
    let c = check(&r, "k8s_pvc_not_rwx");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("paperclip-rwo") && message.contains("ReadWriteOnce"),
        "{c:#}"
    );
    let hint = c["hint"].as_str().unwrap();
    assert!(
        hint.contains("accessModes: [ReadWriteMany]")
            && hint.contains("instead of paperclip-rwo")
            && hint.contains("deploy/pvc-example.yaml"),
        "{c:#}"
    );
    assert!(
        check(&r, "k8s_self_pod")["message"]
            .as_str()
            .unwrap()
            .contains("paperclip/paperclip-rwo")
    );

    let (status, out) = doctor(&["--kubeconfig", &stage.limited_kubeconfig], self_pod);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL k8s_pvc_not_rwx"), "{out}");
    assert!(
        out.contains("fix: access modes cannot be changed on a claim"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Jobs in another namespace

/// With the README's cross-namespace RBAC, the checks pass for the Jobs' namespace and a run's Job, pod and Secret
/// live there (and nowhere else); without it, the checks name every missing rule and a run fails creating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn jobs_run_in_another_namespace_with_the_documented_rbac() {
    let stage = Stage::load();
    let kubeconfig = cross_namespace_user(&stage).await;
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);

    let r = serve
        .test_environment(
            &json!({"kubeconfig": kubeconfig, "namespace": JOBS_NS, "paperclipApiUrl": SERVICE_URL}),
        )
        .await;
    // The only warning: the inherited Secret and ConfigMap must exist in the Jobs' namespace (the adapter may not
    // read Secrets to check).
    assert_eq!(r["status"], "warn", "{r:#}");
    assert_eq!(
        codes_at(&r, "warn"),
        ["k8s_inherited_refs_other_namespace"],
        "{r:#}"
    );
    let c = check(&r, "k8s_inherited_refs_other_namespace");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("Secrets paperclip-secrets and ConfigMaps paperclip-config"),
        "{c:#}"
    );
    assert_every_permission_allowed(&r);
    assert_eq!(check(&r, "k8s_namespace_exists")["level"], "info");
    assert_eq!(check(&r, "k8s_pvc_rwx")["level"], "info");
    assert!(
        check(&r, "k8s_rbac_job_create")["message"]
            .as_str()
            .unwrap()
            .contains(&format!("namespace {JOBS_NS}"))
    );

    let agent = stage::uuid();
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"kubeconfig": kubeconfig, "namespace": JOBS_NS, "retainJobs": true}),
    );
    let run = serve
        .execute(&stage.params(
            &agent,
            &config,
            "Elsewhere [[fake:text from paperclip-jobs]]",
            None,
        ))
        .await;
    assert_eq!(
        run.result["exitCode"],
        0,
        "{:#}\n{}",
        run.result,
        run.log_text()
    );
    assert!(
        run.log_text()
            .contains(&format!("created in namespace {JOBS_NS}")),
        "{}",
        run.log_text()
    );
    assert_eq!(agent_objects::<Job>(&stage, JOBS_NS, &agent).await.len(), 1);
    let pod = the_pod(&agent_pods(&stage, JOBS_NS, &agent).await);
    assert_eq!(
        pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "paperclip-data"
    );
    assert_nothing_created(&stage, "paperclip", &agent).await;
    delete_retained(&stage, JOBS_NS, &agent).await;

    // The limited user has the adapter's Role only in `paperclip`.
    let r = serve
        .test_environment(
            &json!({"kubeconfig": stage.limited_kubeconfig, "namespace": JOBS_NS,
                                  "paperclipApiUrl": SERVICE_URL}),
        )
        .await;
    assert_eq!(r["status"], "fail", "{r:#}");
    let mut denied = codes_at(&r, "error");
    denied.retain(|c| c.starts_with("k8s_rbac_"));
    assert_eq!(denied.len(), PERMISSIONS.len(), "{r:#}");
    let c = check(&r, "k8s_namespace_unverified");
    assert_eq!(
        c["level"], "warn",
        "an explicit namespace that cannot be read: {c:#}"
    );
    assert!(
        c["hint"]
            .as_str()
            .unwrap()
            .contains("clusterrole-cross-namespace.yaml")
    );

    let requests_before = fake.message_requests().len();
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({"namespace": JOBS_NS}));
    let run = serve
        .execute(&stage.params(&agent, &config, "Not allowed [[fake:text no]]", None))
        .await;
    assert!(run.result["exitCode"].is_null(), "{:#}", run.result);
    let message = run.result["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains(JOBS_NS), "{:#}", run.result);
    assert_nothing_created(&stage, JOBS_NS, &agent).await;
    assert_eq!(fake.message_requests().len(), requests_before);
    serve.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Config fields

/// Every bad value fails the run with `invalid_config` naming the field, before any Secret, Job or pod exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_wrong_value_fails_the_run_before_anything_is_created() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    for (field, value) in [
        ("effort", json!("extreme")),
        ("resources.requests.cpu", json!("lots")),
        ("resources.limits.memory", json!("8 gigs")),
        ("timeoutSec", json!(-1)),
        ("graceSec", json!("soon")),
        ("maxTurnsPerRun", json!(-3)),
        ("ttlSecondsAfterFinished", json!(1.5)),
        ("tolerations", json!("[{\"key\": ")),
        ("nodeSelector", json!("no equals sign")),
        ("labels", json!(["a"])),
        ("labels", json!({"team": "not a valid label value!"})),
        ("nodeSelector", json!({"bad key!": "x"})),
        ("podSpecPatch", json!("[1]")),
        ("imagePullPolicy", json!("Sometimes")),
        ("dangerouslySkipPermissions", json!("maybe")),
        ("extraArgs", json!({"a": 1})),
        ("env", json!([1])),
    ] {
        let config = stage.agent_config(&fake, &agent, json!({ field: value }));
        let run = serve
            .execute(&stage.params(&agent, &config, "Never runs [[fake:text no]]", None))
            .await;
        assert_eq!(
            run.result["errorCode"], "invalid_config",
            "{field}: {:#}",
            run.result
        );
        let message = run.result["errorMessage"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{field}`")),
            "{field}: {message}"
        );
        assert!(run.result["exitCode"].is_null());
    }
    assert_nothing_created(&stage, "paperclip", &agent).await;
    assert!(fake.message_requests().is_empty());
    serve.shutdown().await;
}

/// Values only the plan or the API server can judge (a pod-spec patch that is not a pod spec, or one the API
/// server refuses) also fail with a clear message and leave nothing behind, not even the run Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_value_kubernetes_refuses_leaves_nothing_behind() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    for (field, value, expect) in [
        // Not a pod spec at all: refused by the plan.
        (
            "podSpecPatch",
            json!({"containers": "nope"}),
            "podSpecPatch",
        ),
        // A pod spec the API server refuses (422) when the Job is created, after the run Secret was.
        (
            "podSpecPatch",
            json!({"dnsPolicy": "Sometimes"}),
            "dnsPolicy",
        ),
        (
            "podSpecPatch",
            json!({"runtimeClassName": "Not_A_DNS_Name"}),
            "runtimeClassName",
        ),
        // A kubeconfig that is not there: no client, nothing sent.
        (
            "kubeconfig",
            json!("/nonexistent/kubeconfig"),
            "adapterConfig.kubeconfig",
        ),
    ] {
        let config = stage.agent_config(&fake, &agent, json!({ field: value }));
        let run = serve
            .execute(&stage.params(&agent, &config, "Never runs [[fake:text no]]", None))
            .await;
        assert!(
            run.result["exitCode"].is_null(),
            "{field}: {:#}",
            run.result
        );
        let message = run.result["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains(expect), "{field}: {:#}", run.result);
        assert_nothing_created(&stage, "paperclip", &agent).await;
    }
    assert!(fake.message_requests().is_empty());
    serve.shutdown().await;
}

/// The fields whose effect only the cluster shows, read back from the retained Job and its pod: labels on both,
/// ttlSecondsAfterFinished, activeDeadlineSeconds from timeoutSec, graceSec as the pod's grace period, resources,
/// imagePullPolicy, nodeSelector and tolerations as scheduled, env, and serviceAccountName with its token mounted
/// by the API server (and no token without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn config_fields_reach_the_job_and_the_pod_as_scheduled() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let (with_sa, without_sa) = (stage::uuid(), stage::uuid());
    let config = stage.agent_config(
        &fake,
        &with_sa,
        json!({
            "retainJobs": true,
            "labels": "team=core\ncost-center=42",
            "ttlSecondsAfterFinished": "600",
            "timeoutSec": 120,
            "graceSec": 7,
            "imagePullPolicy": "Never",
            "resources.requests.cpu": "150m",
            "resources.requests.memory": "100Mi",
            "resources.limits.cpu": "900m",
            "resources.limits.memory": "1536Mi",
            "nodeSelector": {"kubernetes.io/hostname": "localhost"},
            "tolerations": "[{\"key\": \"paperclip.io/agents\", \"operator\": \"Exists\", \"effect\": \"NoSchedule\"}]",
            "serviceAccountName": "default",
            "env": {"ANTHROPIC_BASE_URL": fake.url(), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                    "CLAUDE_CODE_MAX_RETRIES": "1", "AGENT_FLAVOUR": "configured"}
        }),
    );
    let plain = stage.agent_config(&fake, &without_sa, json!({"retainJobs": true}));
    let a = serve
        .send_execute(&stage.params(&with_sa, &config, "Fields [[fake:text fields]]", None))
        .await;
    let b = serve
        .send_execute(&stage.params(&without_sa, &plain, "Plain [[fake:text plain]]", None))
        .await;
    for id in [a, b] {
        let run = serve.wait_result(&id).await;
        assert_eq!(
            run.result["exitCode"],
            0,
            "{:#}\n{}",
            run.result,
            run.log_text()
        );
    }

    let jobs = Api::<Job>::namespaced(stage.admin_client().await, "paperclip");
    let job = jobs
        .list(&ListParams::default().labels(&format!("paperclip.io/agent-id={with_sa},team=core")))
        .await
        .unwrap()
        .items;
    assert_eq!(job.len(), 1, "selected by the configured label");
    let job = serde_json::to_value(&job[0]).unwrap();
    assert_eq!(job["metadata"]["labels"]["cost-center"], "42");
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 600);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 120 + 7 + 300);

    let pod = the_pod(&agent_pods(&stage, "paperclip", &with_sa).await);
    assert_eq!(pod["metadata"]["labels"]["team"], "core");
    let spec = &pod["spec"];
    assert_eq!(
        spec["nodeName"], "localhost",
        "scheduled with the nodeSelector"
    );
    assert_eq!(spec["nodeSelector"]["kubernetes.io/hostname"], "localhost");
    assert!(
        spec["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "paperclip.io/agents" && t["effect"] == "NoSchedule")
    );
    assert_eq!(spec["terminationGracePeriodSeconds"], 7);
    assert_eq!(spec["serviceAccountName"], "default");
    let claude = &spec["containers"][0];
    assert_eq!(claude["imagePullPolicy"], "Never");
    assert_eq!(spec["initContainers"][0]["imagePullPolicy"], "Never");
    assert_eq!(claude["resources"]["requests"]["cpu"], "150m");
    assert_eq!(claude["resources"]["requests"]["memory"], "100Mi");
    assert_eq!(claude["resources"]["limits"]["cpu"], "900m");
    assert_eq!(claude["resources"]["limits"]["memory"], "1536Mi");
    assert!(
        claude["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "AGENT_FLAVOUR" && e["value"] == "configured")
    );
    let token_mount = |pod: &Value| {
        pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount")
    };
    assert!(
        token_mount(&pod),
        "serviceAccountName: the token is mounted: {pod:#}"
    );

    let plain_pod = the_pod(&agent_pods(&stage, "paperclip", &without_sa).await);
    assert!(
        !token_mount(&plain_pod),
        "no serviceAccountName: no token: {plain_pod:#}"
    );
    assert_eq!(plain_pod["spec"]["automountServiceAccountToken"], false);
    assert!(
        plain_pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v.get("projected").is_none() && !v["name"].as_str().unwrap().contains("token"))
    );
    delete_retained(&stage, "paperclip", &with_sa).await;
    delete_retained(&stage, "paperclip", &without_sa).await;
    serve.shutdown().await;
}

/// A nodeSelector no node matches keeps the pod unschedulable: the run says so while it waits, and timeoutSec
/// ends it with nothing left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_unmatched_node_selector_leaves_the_pod_unschedulable() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"nodeSelector": {"paperclip.io/pool": "nowhere"}, "timeoutSec": 20, "graceSec": 5}),
    );
    let id = serve
        .send_execute(&stage.params(&agent, &config, "Never scheduled [[fake:text no]]", None))
        .await;
    assert!(
        serve
            .wait_for_log(&id, Duration::from_secs(60), |l| l
                .contains("Unschedulable")
                && l.contains("node(s) didn't match"))
            .await,
        "no unschedulable progress line"
    );
    let run = serve.wait_result(&id).await;
    assert_eq!(
        run.result["timedOut"],
        true,
        "{:#}\n{}",
        run.result,
        run.log_text()
    );
    assert!(fake.message_requests().is_empty());
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Bedrock

/// With `CLAUDE_CODE_USE_BEDROCK`, real claude talks to the fake's Bedrock runtime API (AWS event-stream framing):
/// a non-Bedrock model is not passed (Claude picks its Bedrock default), a Bedrock model id is; the AWS env
/// reaches the pod, and the result bills as `aws_bedrock` / `metered_api`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn bedrock_runs_bill_as_aws_bedrock_and_gate_the_model() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let bedrock_env = json!({
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "ANTHROPIC_BEDROCK_BASE_URL": fake.url(),
        "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAFAKEFORTESTS",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1"
    });
    let bedrock_paths = || -> Vec<String> {
        fake.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.starts_with("/model/"))
            .map(|r| r.path)
            .collect()
    };

    let agent = stage::uuid();
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"model": "claude-sonnet-4-6", "env": bedrock_env, "retainJobs": true}),
    );
    let run = serve
        .execute(&stage.params(&agent, &config, "Bedrock [[fake:text via bedrock]]", None))
        .await;
    let r = &run.result;
    assert_eq!(r["exitCode"], 0, "{r:#}\n{}", run.log_text());
    assert_eq!(r["biller"], "aws_bedrock", "{r:#}");
    assert_eq!(r["billingType"], "metered_api", "{r:#}");
    assert!(run.log_text().contains("via bedrock"), "{}", run.log_text());
    assert!(fake.message_requests().is_empty(), "not the Messages API");
    let paths = bedrock_paths();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(
        paths[0].ends_with("/invoke-with-response-stream")
            && !paths[0].contains("claude-sonnet-4-6"),
        "the non-Bedrock model is not passed: {paths:?}"
    );
    let pod = the_pod(&agent_pods(&stage, "paperclip", &agent).await);
    let env = pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    for (name, value) in [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIAFAKEFORTESTS"),
    ] {
        assert!(
            env.iter().any(|e| e["name"] == name && e["value"] == value),
            "{name} reaches the pod"
        );
    }
    let args = pod["spec"]["containers"][0]["args"].as_array().unwrap();
    assert!(!args.contains(&json!("--model")));
    delete_retained(&stage, "paperclip", &agent).await;

    let model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({"model": model, "env": bedrock_env}));
    let run = serve
        .execute(&stage.params(&agent, &config, "Bedrock model [[fake:text pinned]]", None))
        .await;
    assert_eq!(
        run.result["exitCode"],
        0,
        "{:#}\n{}",
        run.result,
        run.log_text()
    );
    assert_eq!(run.result["biller"], "aws_bedrock");
    let paths = bedrock_paths();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        paths[1].starts_with("/model/us.anthropic.claude-sonnet-4-5-20250929-v1"),
        "the Bedrock model id is passed: {paths:?}"
    );
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// The Claude fields as the real claude in the pod applies them, seen by the API: `model` is the requested model,
/// `instructionsFilePath` (a file on the shared volume) and `extraArgs` reach the system prompt, `env` reaches the
/// process; with `dangerouslySkipPermissions: false` a Bash tool call is not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn claude_fields_take_effect_in_the_real_claude() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);

    let agent = stage::uuid();
    let workspace = stage.workspace(&agent);
    let instructions = format!("{workspace}/AGENTS.md");
    std::fs::write(
        &instructions,
        "Always answer as INSTRUCTIONS-MARKER-7f3a.\n",
    )
    .unwrap();
    std::os::unix::fs::chown(&instructions, Some(1000), Some(1000)).unwrap();
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({
            "model": "claude-sonnet-4-6",
            "instructionsFilePath": instructions,
            "extraArgs": ["--append-system-prompt", "EXTRA-ARGS-MARKER-91c2"],
            "env": {"ANTHROPIC_BASE_URL": fake.url(), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                    "CLAUDE_CODE_MAX_RETRIES": "1", "AGENT_MARKER": "env-marker-55d1"},
        }),
    );
    let run = serve
        .execute(&stage.params(
            &agent,
            &config,
            "Fields [[fake:bash echo \"$AGENT_MARKER\" > env.txt]]",
            None,
        ))
        .await;
    assert_eq!(
        run.result["exitCode"],
        0,
        "{:#}\n{}",
        run.result,
        run.log_text()
    );
    let calls = fake.message_requests();
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

    let agent = stage::uuid();
    let workspace = stage.workspace(&agent);
    let config = stage.agent_config(&fake, &agent, json!({"dangerouslySkipPermissions": false}));
    let run = serve
        .execute(&stage.params(
            &agent,
            &config,
            "No permission [[fake:bash echo no > denied.txt]]",
            None,
        ))
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
    stage.assert_nothing_left(&agent).await;

    // maxTurnsPerRun: claude stops after one turn although the reply asks for a tool call; the session is cleared.
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({"maxTurnsPerRun": 1}));
    let run = serve
        .execute(&stage.params(
            &agent,
            &config,
            "One turn only [[fake:bash echo one > turn.txt]]",
            None,
        ))
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
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}
