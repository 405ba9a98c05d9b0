//! The pod's volumes: the shared PVC (the run's directories of it, each a `subPath` mount at its own path, or the
//! whole of it in the seed's layout), the prompt's emptyDir, `/tmp` (the root filesystem is read-only), the run
//! Secret, the in-memory MCP directory and the Paperclip pod's secret volumes, with the init script that fills the
//! emptyDirs.

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, SecretVolumeSource, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{PROMPT_DIR, PROMPT_KEY, RUN_SECRET_DIR, RunPlanInput};
use crate::run::prepare::mcp::{MCP_CONFIG_FILE, MCP_DIR};
use crate::run::prepare::pod_facts::{DATA_MOUNT_PATH, PodFacts};
use crate::run::prepare::view::View;

/// The pod's volumes, where each container mounts them, and the init container's script that fills them.
pub(super) struct Volumes {
    pub volumes: Vec<Volume>,
    pub claude_mounts: Vec<VolumeMount>,
    pub init_mounts: Vec<VolumeMount>,
    pub init_script: String,
}

pub(super) fn volumes(
    input: &RunPlanInput<'_>,
    facts: &PodFacts,
    claim: String,
    secret_name: &str,
) -> Volumes {
    let mut volumes = vec![
        Volume {
            name: "paperclip-data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: None,
            }),
            ..Default::default()
        },
        Volume {
            name: "prompt".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: "run-secret".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name.to_owned()),
                // Group-readable so UID 1000 reads it through fsGroup; nothing else in the pod runs.
                default_mode: Some(0o440),
                // Only the init container reads it. Optional, so that once cleanup deleted the Secret the kubelet's
                // periodic volume resync does not fail and stall the pod's termination (seen on 1.20: minutes).
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut claude_mounts = data_mounts(input.view, facts.data_sub_path.as_deref());
    claude_mounts.extend([
        VolumeMount {
            name: "prompt".into(),
            mount_path: PROMPT_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    ]);
    let mut init_mounts = vec![
        VolumeMount {
            name: "prompt".into(),
            mount_path: PROMPT_DIR.into(),
            ..Default::default()
        },
        VolumeMount {
            name: "run-secret".into(),
            mount_path: RUN_SECRET_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    let mut init_script =
        format!("gunzip -c {RUN_SECRET_DIR}/{PROMPT_KEY} > {PROMPT_DIR}/prompt.txt");
    if input.mcp_config.is_some() {
        // In memory, never on the node's disk; gone with the pod. Written by the init container (UID 1000 too).
        volumes.push(Volume {
            name: "mcp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity("1Mi".into())),
                ..Default::default()
            }),
            ..Default::default()
        });
        init_mounts.push(VolumeMount {
            name: "mcp".into(),
            mount_path: MCP_DIR.into(),
            ..Default::default()
        });
        claude_mounts.push(VolumeMount {
            name: "mcp".into(),
            mount_path: MCP_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        init_script.push_str(&format!(
            " && (umask 077 && cp {RUN_SECRET_DIR}/{MCP_CONFIG_FILE} {MCP_DIR}/{MCP_CONFIG_FILE}) && chmod 0400 \
             {MCP_DIR}/{MCP_CONFIG_FILE}"
        ));
    }
    for (volume, mount) in &facts.secret_volumes {
        // Our own volume names are fixed; an inherited one that collides is renamed, not dropped.
        let name = if ["paperclip-data", "prompt", "run-secret", "mcp", "tmp"]
            .contains(&volume.name.as_str())
        {
            format!("inherited-{}", volume.name)
        } else {
            volume.name.clone()
        };
        volumes.push(Volume {
            name: name.clone(),
            ..volume.clone()
        });
        claude_mounts.push(VolumeMount {
            name,
            ..mount.clone()
        });
    }
    // Where claude and its tools write besides HOME: the root filesystem is read-only.
    volumes.push(Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    Volumes {
        volumes,
        claude_mounts,
        init_mounts,
        init_script,
    }
}

/// The claim's mounts of the claude container: each directory of the run's view at its own path (a `subPath` of
/// the claim, below the Paperclip pod's own `subPath` if it mounts one), or the whole claim at `/paperclip`.
pub(super) fn data_mounts(view: &View, server_sub_path: Option<&str>) -> Vec<VolumeMount> {
    let below = |rel: &str| {
        let base = server_sub_path.unwrap_or("").trim_matches('/');
        let rel = rel.trim_matches('/');
        let joined = match (base.is_empty(), rel.is_empty()) {
            (true, _) => rel.to_owned(),
            (false, true) => base.to_owned(),
            (false, false) => format!("{base}/{rel}"),
        };
        (!joined.is_empty()).then_some(joined)
    };
    if view.whole {
        return vec![VolumeMount {
            name: "paperclip-data".into(),
            mount_path: DATA_MOUNT_PATH.into(),
            sub_path: below(""),
            ..Default::default()
        }];
    }
    view.mounts
        .iter()
        .filter_map(|m| {
            let rel = m.path.strip_prefix(DATA_MOUNT_PATH)?;
            Some(VolumeMount {
                name: "paperclip-data".into(),
                mount_path: m.path.clone(),
                sub_path: below(rel),
                read_only: m.read_only.then_some(true),
                ..Default::default()
            })
        })
        .collect()
}
