//! Issue 4 on the real stage: environment checks (through `claude-k8s serve` and `claude-k8s doctor`), config
//! fields whose effect only the cluster shows, bad values that create nothing, Jobs in another namespace, and
//! the Claude fields (Bedrock among them) as the real claude applies them.
//!
//! Each test makes the stage objects it needs itself ([`fixtures`]), idempotently and without restarting the
//! stage (server-side apply as admin):
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

mod checks;
mod claude;
mod fields;
mod fixtures;
mod namespaces;

use claude_k8s::checks::PERMISSIONS;
use serde_json::Value;

/// A Service URL, so the API-URL check passes (the stand-in's own is loopback, which warns).
const SERVICE_URL: &str = "http://paperclip.paperclip.svc:3100";

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
