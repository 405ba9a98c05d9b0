//! `claude-k8s doctor`: the environment checks for an operator's terminal.

use std::process::ExitCode;

use serde_json::{Map, Value};

use crate::cli::checks::{self, Level};
use crate::k8s::clients::Clients;
use crate::run::prepare::introspect::SelfPod;
use crate::serve::protocol::TestEnvironmentParams;
use crate::settings::Settings;

pub async fn run(
    settings: &Settings,
    kubeconfig: Option<String>,
    namespace: Option<String>,
    json: bool,
) -> ExitCode {
    // The policy the Paperclip Deployment's serve processes would read; the operator's own flags are theirs.
    let policy = match settings.policy() {
        Ok(p) => p.with_operator_choices(kubeconfig.as_deref(), namespace.as_deref()),
        Err(e) => {
            eprintln!("claude-k8s doctor: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !json {
        println!("{}", policy.summary());
    }
    let mut config = Map::new();
    if let Some(k) = kubeconfig {
        config.insert("kubeconfig".into(), Value::String(k));
    }
    if let Some(ns) = namespace {
        config.insert("namespace".into(), Value::String(ns));
    }
    let params = TestEnvironmentParams {
        adapter_type: "claude_k8s".into(),
        config,
        ..Default::default()
    };
    let result = checks::test_environment(
        &Clients::default(),
        &SelfPod::default(),
        settings,
        &policy,
        &params,
    )
    .await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    } else {
        for c in &result.checks {
            let mark = match c.level {
                Level::Info => "ok  ",
                Level::Warn => "WARN",
                Level::Error => "FAIL",
            };
            println!("{mark} {:<34} {}", c.code, c.message);
            if let Some(hint) = &c.hint {
                println!("     {:<34} fix: {hint}", "");
            }
        }
        println!("status: {}", result.status);
    }
    if result.status == "fail" {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
