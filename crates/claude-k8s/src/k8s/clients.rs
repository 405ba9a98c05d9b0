//! Kubernetes clients, one per kubeconfig, made once and shared by every run. The only place that reads
//! kubeconfig files or the in-cluster environment.

use std::collections::HashMap;
use std::sync::Arc;

use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use tokio::sync::Mutex;

use crate::k8s::watches::Watches;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read kubeconfig {path}: {source} (check adapterConfig.kubeconfig)")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no Kubernetes configuration: not running in a pod and no kubeconfig found ({0}); set adapterConfig.kubeconfig or KUBECONFIG"
    )]
    Infer(kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Build(kube::Error),
}

/// A client, the namespace its configuration defaults to, and the watches every run on it shares.
#[derive(Clone)]
pub struct KubeCtx {
    pub client: Client,
    pub default_namespace: String,
    pub watches: Arc<Watches>,
}

#[derive(Default)]
pub struct Clients {
    cache: Mutex<HashMap<Option<String>, KubeCtx>>,
}

impl Clients {
    /// The client for `kubeconfig` (a path), or the inferred one (in-cluster, else `KUBECONFIG`) for `None`.
    pub async fn get(&self, kubeconfig: Option<&str>) -> Result<KubeCtx, ClientError> {
        let key = kubeconfig.map(str::to_owned);
        let mut cache = self.cache.lock().await;
        if let Some(ctx) = cache.get(&key) {
            return Ok(ctx.clone());
        }
        let config = match kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig {
                    path: path.to_owned(),
                    source,
                })?;
                Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(|source| ClientError::Kubeconfig {
                        path: path.to_owned(),
                        source,
                    })?
            }
            None => Config::infer().await.map_err(ClientError::Infer)?,
        };
        let default_namespace = config.default_namespace.clone();
        let client = Client::try_from(config).map_err(ClientError::Build)?;
        let ctx = KubeCtx {
            default_namespace,
            watches: Arc::new(Watches::new(client.clone())),
            client,
        };
        cache.insert(key, ctx.clone());
        Ok(ctx)
    }
}

pub type SharedClients = Arc<Clients>;
