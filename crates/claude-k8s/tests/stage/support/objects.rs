//! The Kubernetes objects of the tests' agents, read as admin: what a run made, and that nothing of it is left.

use std::fmt::Debug;
use std::time::Duration;

use claude_k8s::labels::AGENT_ID;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{NAMESPACE, Stage};

/// The label selector of everything the adapter made for `agent`.
pub fn agent_selector(agent: &str) -> String {
    format!("{AGENT_ID}={agent}")
}

/// Polls (bounded) until `check` is true.
pub async fn wait_until<F, Fut>(what: &str, secs: u64, mut check: F)
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

impl Stage {
    /// The objects of kind `K` that carry `agent`'s label in `namespace`.
    pub async fn agent_objects<K>(&self, namespace: &str, agent: &str) -> Vec<K>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
        K::DynamicType: Default,
    {
        self.agent_objects_selected(namespace, &agent_selector(agent))
            .await
    }

    /// The objects of kind `K` in `namespace` that `selector` selects.
    pub async fn agent_objects_selected<K>(&self, namespace: &str, selector: &str) -> Vec<K>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
        K::DynamicType: Default,
    {
        list(&self.admin_client().await, namespace, selector).await
    }

    /// The names of [`Stage::agent_objects`].
    pub async fn agent_object_names<K>(&self, namespace: &str, agent: &str) -> Vec<String>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
        K::DynamicType: Default,
    {
        names(self.agent_objects::<K>(namespace, agent).await)
    }

    /// The agent's Jobs in the stage's namespace.
    pub async fn agent_jobs(&self, agent: &str) -> Vec<Job> {
        self.agent_objects(NAMESPACE, agent).await
    }

    /// The name of the agent's (one) Job in the stage's namespace.
    pub async fn job_name(&self, agent: &str) -> String {
        self.agent_jobs(agent).await[0]
            .metadata
            .name
            .clone()
            .unwrap()
    }

    /// The agent's pods in `namespace`.
    pub async fn agent_pods(&self, namespace: &str, agent: &str) -> Vec<Pod> {
        self.agent_objects(namespace, agent).await
    }

    /// No Job, pod or run Secret of the agent exists in `namespace`, at once (for runs that must not get as far
    /// as creating anything).
    pub async fn assert_nothing_created(&self, namespace: &str, agent: &str) {
        assert_eq!(
            self.agent_object_names::<Job>(namespace, agent).await,
            Vec::<String>::new()
        );
        assert_eq!(
            self.agent_object_names::<Pod>(namespace, agent).await,
            Vec::<String>::new()
        );
        assert_eq!(
            self.agent_object_names::<Secret>(namespace, agent).await,
            Vec::<String>::new()
        );
    }

    /// Deletes the agent's retained Jobs and run Secrets in `namespace` and waits (bounded) until the Jobs and
    /// their pods are gone.
    pub async fn delete_retained(&self, namespace: &str, agent: &str) {
        let client = self.admin_client().await;
        for name in self.agent_object_names::<Job>(namespace, agent).await {
            Api::<Job>::namespaced(client.clone(), namespace)
                .delete(&name, &DeleteParams::background())
                .await
                .unwrap();
        }
        for name in self.agent_object_names::<Secret>(namespace, agent).await {
            let _ = Api::<Secret>::namespaced(client.clone(), namespace)
                .delete(&name, &DeleteParams::default())
                .await;
        }
        wait_until("the retained Job's pods are gone", 90, || async {
            self.agent_object_names::<Pod>(namespace, agent)
                .await
                .is_empty()
                && self
                    .agent_object_names::<Job>(namespace, agent)
                    .await
                    .is_empty()
        })
        .await;
    }

    /// No Job, pod, Lease or run Secret of the agent remains in `namespace`. The result of a normal end goes out
    /// before the pods and the run Secret are gone (the adapter finishes the cleanup right after it), so this
    /// waits for that, bounded.
    pub async fn assert_nothing_left_in(&self, namespace: &str, agent: &str) {
        let client = self.admin_client().await;
        let selector = agent_selector(agent);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = (
                names(list::<Job>(&client, namespace, &selector).await),
                names(list::<Pod>(&client, namespace, &selector).await),
                names(list::<Lease>(&client, namespace, &selector).await),
                names(list::<Secret>(&client, namespace, &selector).await),
            );
            if left.0.is_empty() && left.1.is_empty() && left.2.is_empty() && left.3.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "left after 60 s in {namespace}: Jobs {:?}, pods {:?}, Leases {:?}, run Secrets {:?}",
                left.0,
                left.1,
                left.2,
                left.3
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn list<K>(client: &Client, namespace: &str, selector: &str) -> Vec<K>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

fn names<K: Resource>(objects: Vec<K>) -> Vec<String> {
    objects
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect()
}

/// The one pod of a Job, as JSON.
pub fn the_pod(job_pods: &[Pod]) -> Value {
    assert_eq!(job_pods.len(), 1, "one pod per Job");
    serde_json::to_value(&job_pods[0]).unwrap()
}
