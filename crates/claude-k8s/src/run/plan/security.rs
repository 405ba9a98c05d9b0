//! The security context of the adapter's containers, and taking it back after a `podSpecPatch`: whatever the
//! operator policy does not let a patch loosen is ours again.

use k8s_openapi::api::core::v1::{Capabilities, PodSpec, SecurityContext};

use crate::policy::PatchRules;
use crate::policy::pattern::any_matches;

/// The security context of every container the adapter makes: no privilege escalation, not root, no
/// capabilities.
pub(super) fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    }
}

/// After a `podSpecPatch`: the pod's and every container's security context, the host namespaces, the node and the
/// service account are ours again, except for what the operator policy lets a patch loosen (the policy refused a
/// patch that asked for more before; this makes sure a patch that left something out does not loosen it either).
pub fn reapply_security(patched: &mut PodSpec, ours: &PodSpec, rules: &PatchRules) {
    if !rules.security_context {
        patched.security_context = ours.security_context.clone();
    }
    let allowed = |ns: &str| rules.host_namespaces.iter().any(|h| h == ns);
    if !allowed("hostNetwork") {
        patched.host_network = ours.host_network;
    }
    if !allowed("hostPID") {
        patched.host_pid = ours.host_pid;
    }
    if !allowed("hostIPC") {
        patched.host_ipc = ours.host_ipc;
    }
    if !rules.node_name {
        patched.node_name = ours.node_name.clone();
    }
    if !rules.service_account {
        patched.service_account_name = ours.service_account_name.clone();
        patched.service_account = ours.service_account.clone();
        patched.automount_service_account_token = ours.automount_service_account_token;
    }
    let ours_named = |name: &str| {
        ours.init_containers
            .iter()
            .flatten()
            .chain(&ours.containers)
            .find(|c| c.name == name)
            .and_then(|c| c.security_context.clone())
    };
    let all = patched
        .init_containers
        .iter_mut()
        .flatten()
        .chain(patched.containers.iter_mut());
    for c in all {
        let ours = ours_named(&c.name).unwrap_or_else(container_security);
        c.security_context = Some(reapplied(c.security_context.take(), ours, rules));
    }
    for c in patched.ephemeral_containers.iter_mut().flatten() {
        c.security_context = Some(reapplied(
            c.security_context.take(),
            container_security(),
            rules,
        ));
    }
}

/// A container's security context after a patch: `patched`, with every loosening the rules do not allow taken back
/// to `ours`.
fn reapplied(
    patched: Option<SecurityContext>,
    ours: SecurityContext,
    rules: &PatchRules,
) -> SecurityContext {
    let mut sc = patched.unwrap_or_else(|| ours.clone());
    if !rules.privileged {
        sc.privileged = None;
    }
    if !rules.privilege_escalation {
        sc.allow_privilege_escalation = Some(false);
    }
    let added: Option<Vec<String>> = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.clone())
        .map(|add| {
            add.into_iter()
                .filter(|cap| any_matches(&rules.added_capabilities, cap))
                .collect()
        })
        .filter(|add: &Vec<String>| !add.is_empty());
    if rules.security_context {
        if let Some(caps) = sc.capabilities.as_mut() {
            caps.add = added;
        }
        return sc;
    }
    sc.capabilities = Some(Capabilities {
        drop: Some(vec!["ALL".into()]),
        add: added,
    });
    sc.run_as_non_root = Some(true);
    if sc.run_as_user == Some(0) {
        sc.run_as_user = ours.run_as_user;
    }
    if sc.run_as_group == Some(0) {
        sc.run_as_group = ours.run_as_group;
    }
    sc.proc_mount = None;
    sc.se_linux_options = None;
    sc.windows_options = None;
    if sc
        .seccomp_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        sc.seccomp_profile = None;
    }
    if sc
        .app_armor_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        sc.app_armor_profile = None;
    }
    if ours.read_only_root_filesystem == Some(true) {
        sc.read_only_root_filesystem = Some(true);
    }
    sc
}
