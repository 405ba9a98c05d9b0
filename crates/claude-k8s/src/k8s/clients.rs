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
    /// `why` never holds the file's text: a path that is not a kubeconfig may be any file (a key, an env file).
    #[error("cannot read kubeconfig {path}: {why} (check adapterConfig.kubeconfig)")]
    Kubeconfig { path: String, why: String },
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
                let fail = |why: String| ClientError::Kubeconfig {
                    path: path.to_owned(),
                    why,
                };
                let kc = read_kubeconfig(path).map_err(fail)?;
                Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| fail(describe(&e)))?
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

/// A kubeconfig is a few KiB; anything this large is some other file.
const MAX_KUBECONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a kubeconfig file: a regular file of bounded size, parsed without ever quoting it, with the files it
/// names relative to its own directory made absolute (as kube's own reader does).
fn read_kubeconfig(path: &str) -> Result<Kubeconfig, String> {
    let text = crate::confined::read_regular_file(std::path::Path::new(path), MAX_KUBECONFIG_BYTES)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8(text).map_err(|_| "it is not UTF-8 text".to_owned())?;
    let mut kc = Kubeconfig::from_yaml(&text).map_err(|e| describe(&e))?;
    if let Some(dir) = std::path::Path::new(path).parent() {
        let absolute = |p: &mut Option<String>| {
            if let Some(rel) = p.as_ref().filter(|f| std::path::Path::new(f).is_relative()) {
                *p = Some(dir.join(rel).to_string_lossy().into_owned());
            }
        };
        for c in kc.clusters.iter_mut().filter_map(|n| n.cluster.as_mut()) {
            absolute(&mut c.certificate_authority);
        }
        for a in kc
            .auth_infos
            .iter_mut()
            .filter_map(|n| n.auth_info.as_mut())
        {
            absolute(&mut a.client_certificate);
            absolute(&mut a.client_key);
            absolute(&mut a.token_file);
            if let Some(exec) = a.exec.as_mut()
                && exec.command.as_deref().is_some_and(|c| c.contains('/'))
            {
                absolute(&mut exec.command);
            }
        }
    }
    Ok(kc)
}

/// What went wrong with a kubeconfig, in words of our own: kube's messages quote the file (a YAML error shows the
/// offending text, a missing context its name), and the file may be something else entirely.
fn describe(e: &kube::config::KubeconfigError) -> String {
    use kube::config::KubeconfigError as E;
    match e {
        E::Parse(_) => "it is not a kubeconfig (not YAML that kube can read)".into(),
        E::CurrentContextNotSet => "it sets no current-context".into(),
        E::LoadContext(_) => "its current-context names no context it defines".into(),
        E::LoadClusterOfContext(_) => "its current context names no cluster it defines".into(),
        E::MissingClusterUrl => "its cluster has no server URL".into(),
        E::ParseClusterUrl(_) => "its cluster's server URL is not a valid URL".into(),
        E::ParseProxyUrl(_) => "its cluster's proxy URL is not a valid URL".into(),
        E::LoadCertificateAuthority(_) => {
            "its certificate authority cannot be loaded (unreadable file or bad base64)".into()
        }
        E::LoadClientCertificate(_) => {
            "its client certificate cannot be loaded (unreadable file or bad base64)".into()
        }
        E::LoadClientKey(_) => {
            "its client key cannot be loaded (unreadable file or bad base64)".into()
        }
        E::ParseCertificates(_) => "its certificates are not valid PEM".into(),
        E::KindMismatch | E::ApiVersionMismatch => "its documents cannot be merged".into(),
        E::ReadConfig(io, _) => format!("cannot read it ({})", io.kind()),
        _ => "it cannot be used as a kubeconfig".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_that_is_not_a_kubeconfig_is_never_quoted() {
        let dir = std::env::temp_dir().join(format!("claude-k8s-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = "PAPERCLIP_AGENT_JWT_SECRET=7f3c0a9e-never-print-me";
        for (name, text) in [
            ("env", format!("{secret}\n")),
            (
                "yaml-ish",
                format!("apiVersion: v1\nkind: Config\ncurrent-context: {secret}\n"),
            ),
            (
                "key",
                format!("-----BEGIN PRIVATE KEY-----\n{secret}\n: [\n"),
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let err = Clients::default()
                .get(Some(&path.display().to_string()))
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(
                !err.contains("never-print-me") && !err.contains("BEGIN"),
                "{name}: {err}"
            );
        }
        // Not a regular file, or too large: refused before reading.
        for path in [dir.display().to_string(), "/dev/zero".to_owned()] {
            let err = Clients::default()
                .get(Some(&path))
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("not a regular file"), "{err}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
