//! The node's kubelet API on loopback HTTPS: what the API server calls for `pods/log`
//! (`GET /containerLogs/{namespace}/{pod}/{container}`), and `/healthz`. Like the stage's real kubelet it asks
//! for no client certificate (the stage's API server has no kubelet client certificate either): loopback only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use jiff::Timestamp;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::logs::{self, Container, LogQuery};
use crate::pods::Registry;

pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("read certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse certificate {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("read key {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not fit")?;
    Ok(Arc::new(config))
}

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not served by the simulated node\n") })
        .with_state(registry)
}

fn text(code: StatusCode, message: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

async fn container_logs(
    State(registry): State<Arc<Registry>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let q = match LogQuery::parse(&query, Timestamp::now()) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let Some(entry) = registry.get(&namespace, &pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not on this node"),
        );
    };
    let info = &entry.info;
    let known = |list: &[(String, String)]| list.iter().any(|(n, _)| *n == container);
    if !known(&info.containers) && !known(&info.init_containers) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not valid for pod {pod}"),
        );
    }
    if q.previous {
        return text(
            StatusCode::BAD_REQUEST,
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
        );
    }
    let state = entry.state.subscribe();
    if *state.borrow() == Container::Waiting {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: PodInitializing"
            ),
        );
    }
    let ok = |body: Body| ([(header::CONTENT_TYPE, "text/plain")], body).into_response();
    if container != info.played {
        // The other containers print nothing.
        return ok(Body::empty());
    }
    ok(Body::from_stream(logs::stream(
        entry.script.clone(),
        state,
        q,
    )))
}

/// Serves `router` on `listener` over TLS until the process ends.
pub async fn serve(listener: TcpListener, tls: Arc<ServerConfig>, router: Router) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, typically: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                };
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on {addr}"))
}
