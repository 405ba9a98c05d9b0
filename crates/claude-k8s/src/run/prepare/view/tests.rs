use super::*;
use crate::run::prepare::prompt_bundle::PromptBundle;
use serde_json::json;

const ROOT: &str = "/paperclip/instances/default";
const AGENT: &str = "11111111-2222-4333-8444-555555555555";

fn params(context: Value, skills: Value) -> ExecuteParams {
    serde_json::from_value(json!({
        "runId": "r", "agent": {"id": AGENT, "companyId": "co-1"},
        "context": context,
        "promptBundle": {"instanceRoot": ROOT, "skills": skills}
    }))
    .unwrap()
}

fn config(v: Value) -> AgentConfig {
    AgentConfig::parse(v.as_object().unwrap()).unwrap()
}

fn toolkit() -> Toolkit {
    Toolkit {
        bundle: Some(PromptBundle {
            key: "k1".into(),
            root: format!("{ROOT}/companies/co-1/claude-k8s-prompt-cache/k1"),
            instructions_file: None,
        }),
        ..Toolkit::default()
    }
}

fn mounts(view: &View) -> Vec<(&str, bool)> {
    view.mounts
        .iter()
        .map(|m| (m.path.as_str(), m.read_only))
        .collect()
}

#[test]
fn a_run_sees_its_workspaces_home_and_bundle_and_nothing_else() {
    let ws = format!("{ROOT}/workspaces/{AGENT}");
    let p = params(
        json!({"paperclipWorkspace": {"cwd": format!("{ROOT}/projects/co-1/p1/repo"), "source": "project_primary",
                                      "agentHome": ws},
               "paperclipWorkspaces": [{"cwd": format!("{ROOT}/projects/co-1/p2/repo")}]}),
        json!([{"key": "s", "runtimeName": "s", "source": format!("{ROOT}/companies/co-1/skills/s")},
               {"key": "t", "runtimeName": "t", "source": "/usr/lib/node_modules/x/skills/t"}]),
    );
    let c = config(json!({
        "instructionsFilePath": format!("{ROOT}/companies/co-1/agents/{AGENT}/instructions/AGENTS.md")
    }));
    let view = of_run(&p, &c, &toolkit(), false);
    let home = format!("{ROOT}/companies/co-1/claude-k8s-homes/{AGENT}");
    assert_eq!(view.home, home);
    // Outer directories first (fewer components), then by path.
    assert_eq!(
        mounts(&view),
        [
            (format!("{ROOT}/workspaces/{AGENT}").as_str(), false),
            (home.as_str(), false),
            (
                format!("{ROOT}/companies/co-1/claude-k8s-prompt-cache/k1").as_str(),
                true
            ),
            (format!("{ROOT}/companies/co-1/skills/s").as_str(), true),
            (format!("{ROOT}/projects/co-1/p1/repo").as_str(), false),
            (format!("{ROOT}/projects/co-1/p2/repo").as_str(), false),
            (
                format!("{ROOT}/companies/co-1/agents/{AGENT}/instructions").as_str(),
                true
            ),
        ]
    );
    // A skill off the volume is copied into the bundle: nothing to mount, and no note either.
    assert!(view.notes.is_empty(), "{:?}", view.notes);
    assert!(!view.whole);
}

#[test]
fn the_seed_layout_is_the_whole_volume_with_the_shared_home() {
    let view = of_run(
        &params(json!({}), json!([])),
        &config(json!({})),
        &toolkit(),
        true,
    );
    assert!(view.whole && view.mounts.is_empty());
    assert_eq!(
        (view.home.as_str(), view.fallback_cwd()),
        ("/paperclip", "/paperclip")
    );
}

#[test]
fn without_a_workspace_the_run_works_in_its_home() {
    let view = of_run(
        &params(json!({}), json!([])),
        &config(json!({})),
        &Toolkit::default(),
        false,
    );
    assert_eq!(view.fallback_cwd(), view.home);
    assert_eq!(mounts(&view), [(view.home.as_str(), false)]);
}

#[test]
fn paperclips_own_data_is_never_mounted() {
    for p in [
        "/paperclip",
        "/paperclip/instances",
        ROOT,
        "/paperclip/instances/default/.env",
        "/paperclip/instances/default/secrets",
        "/paperclip/instances/default/db/base",
        "/paperclip/instances/default/data/run-logs",
        "/paperclip/instances/default/logs",
        "/paperclip/instances/default/config.json",
        "/paperclip/instances/other/workspaces/x",
        "/paperclip/.claude",
        "/paperclip/.claude/projects/x",
        "/paperclip/.claude.json",
        "/paperclip/claude-k8s",
        "/paperclip/claude-k8s/sessions",
    ] {
        assert!(never_mounted(Path::new(p), Some(ROOT)).is_some(), "{p}");
    }
    for p in [
        "/paperclip/instances/default/workspaces/a",
        "/paperclip/instances/default/projects/co/p/repo",
        "/paperclip/instances/default/companies/co/claude-k8s-prompt-cache/k",
        "/paperclip/claude-k8s/companies/co/claude-k8s-homes/a",
        "/paperclip/test-workspaces/a",
    ] {
        assert_eq!(never_mounted(Path::new(p), Some(ROOT)), None, "{p}");
    }
    // A workspace naming the instance root from a hostile project is left out of the view (the policy refused it
    // before the view is made; this is the second line).
    let p = params(json!({"paperclipWorkspace": {"cwd": ROOT}}), json!([]));
    let view = of_run(&p, &config(json!({})), &Toolkit::default(), false);
    assert_eq!(mounts(&view), [(view.home.as_str(), false)]);
}

#[test]
fn workspaces_name_their_field_and_whether_the_config_chose_them() {
    let ws = format!("{ROOT}/workspaces/{AGENT}");
    let p = params(
        json!({"paperclipWorkspace": {"cwd": ws, "source": "agent_home"}}),
        json!([]),
    );
    let got = workspaces(&p, &config(json!({"cwd": "/paperclip/mine"})), "/home");
    assert_eq!(
        got,
        [Workspace {
            field: "cwd".into(),
            path: "/paperclip/mine".into(),
            from_config: true
        }]
    );
    let got = workspaces(&p, &config(json!({})), "/home");
    assert_eq!(got[0].field, "context.paperclipWorkspace.cwd");
    assert!(!got[0].from_config);
    // Nothing at all: the fallback is the home, which is not a workspace to judge.
    assert!(workspaces(&params(json!({}), json!([])), &config(json!({})), "/home").is_empty());
}

#[test]
fn nested_mounts_of_the_same_mode_collapse_and_read_write_wins() {
    let m = |p: &str, ro: bool| ViewMount {
        path: p.into(),
        read_only: ro,
        what: "x",
    };
    let got = simplified(vec![
        m("/paperclip/a/b", false),
        m("/paperclip/a", false),
        m("/paperclip/a/ro", true),
        m("/paperclip/c", true),
        m("/paperclip/c", false),
    ]);
    let got: Vec<(&str, bool)> = got.iter().map(|m| (m.path.as_str(), m.read_only)).collect();
    assert_eq!(
        got,
        [
            ("/paperclip/a", false),
            ("/paperclip/c", false),
            ("/paperclip/a/ro", true)
        ]
    );
}
