//! The stage objects the configuration tests make themselves, idempotently and without restarting the stage
//! (server-side apply as admin): users `nolog` and `crossns`, namespace `paperclip-jobs`, pod
//! `paperclip/paperclip-rwo` (see the module's doc in `config/mod.rs`).

use std::fmt::Debug;

use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::support::{Stage, client_for, repo_root, short_id, stage_env, wait_until};

/// The namespace of the cross-namespace recipe's Jobs.
pub const JOBS_NS: &str = "paperclip-jobs";

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

/// A kubeconfig that acts as `user` (admin's credentials, `as: user`), in target/testcluster/.
fn impersonating_kubeconfig(stage: &Stage, user: &str) -> String {
    let mut kc = Kubeconfig::read_from(&stage.admin_kubeconfig).unwrap();
    for named in &mut kc.auth_infos {
        named.auth_info.as_mut().unwrap().impersonate = Some(user.to_owned());
    }
    let path = repo_root().join(format!("target/testcluster/{user}.kubeconfig"));
    // JSON is YAML; written whole then renamed, since tests running in parallel may write it at once.
    let tmp = path.with_extension(format!("tmp{}", short_id()));
    std::fs::write(&tmp, serde_json::to_vec(&kc).unwrap()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path.to_string_lossy().into_owned()
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
pub async fn nolog_user(stage: &Stage) -> String {
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
pub async fn rwo_stand_in(stage: &Stage) -> &'static str {
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
pub async fn cross_namespace_user(stage: &Stage) -> String {
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
    let out = std::process::Command::new(stage_env("KUBECTL"))
        .args(["--kubeconfig", &stage.admin_kubeconfig, "apply", "-f"])
        .arg(repo_root().join("deploy/clusterrole-cross-namespace.yaml"))
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
