//! The pod's volumes: the shared PVC (the run's directories of it, each a `subPath` mount at its own path, or the
//! whole of it in the seed's layout), `/tmp` (the root filesystem is read-only), the run Secret (the prompt and the
//! MCP config are read from it), the Paperclip pod's secret volumes, and for a packed prompt the emptyDir the init
//! container unpacks it into, with the init script.

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, SecretVolumeSource, Volume,
    VolumeMount,
};

use super::{
    PACKED_PROMPT_KEY, PROMPT_DIR, PROMPT_KEY, PromptDelivery, RUN_SECRET_DIR, RunPlanInput,
};
use crate::run::prepare::pod_facts::{DATA_MOUNT_PATH, PodFacts};
use crate::run::prepare::view::View;

/// The pod's volumes, where the claude container mounts them, and the init container's mounts and script when the
/// prompt is packed.
pub(super) struct Volumes {
    pub volumes: Vec<Volume>,
    pub claude_mounts: Vec<VolumeMount>,
    pub init: Option<(Vec<VolumeMount>, String)>,
}

pub(super) fn volumes(
    input: &RunPlanInput<'_>,
    facts: &PodFacts,
    claim: String,
    secret_name: &str,
    delivery: PromptDelivery,
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
            name: "run-secret".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name.to_owned()),
                // Group-readable so UID 1000 reads it through fsGroup; nothing else in the pod runs.
                default_mode: Some(0o440),
                // Read when claude starts. Optional, so that once cleanup deleted the Secret the kubelet's periodic
                // volume resync does not fail and stall the pod's termination (seen on 1.20: minutes).
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let run_secret_mount = VolumeMount {
        name: "run-secret".into(),
        mount_path: RUN_SECRET_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    };
    let mut claude_mounts = data_mounts(input.view, facts.data_sub_path.as_deref());
    claude_mounts.extend([
        run_secret_mount.clone(),
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..Default::default()
        },
    ]);
    let init = (delivery == PromptDelivery::Unpacked).then(|| {
        volumes.push(Volume {
            name: "prompt".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        claude_mounts.push(VolumeMount {
            name: "prompt".into(),
            mount_path: PROMPT_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        let mounts = vec![
            VolumeMount {
                name: "prompt".into(),
                mount_path: PROMPT_DIR.into(),
                ..Default::default()
            },
            run_secret_mount,
        ];
        let script =
            format!("gunzip -c {RUN_SECRET_DIR}/{PACKED_PROMPT_KEY} > {PROMPT_DIR}/{PROMPT_KEY}");
        (mounts, script)
    });
    for (volume, mount) in &facts.secret_volumes {
        // Our own volume names are fixed; an inherited one that collides is renamed, not dropped.
        let name =
            if ["paperclip-data", "prompt", "run-secret", "tmp"].contains(&volume.name.as_str()) {
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
        init,
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
