//! One stage test's world: the stage, a fake Messages API, a real `claude-k8s serve`, and the agents the test
//! made. [`World::finish`] is every test's last step: nothing of any of its agents is left, then serve stops.

use std::time::Duration;

use fake_anthropic::FakeAnthropic;
use serde_json::Value;

use super::{NAMESPACE, RunRecord, Serve, Stage, uuid};

pub struct World {
    pub stage: Stage,
    pub fake: FakeAnthropic,
    pub serve: Serve,
    /// The agents made by [`World::agent`] and [`World::agent_in`], with the namespace their runs use.
    agents: Vec<(String, String)>,
}

impl World {
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// With extra environment for the serve process (shorter time limits, another stand-in pod as its own).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Self {
        Self::on(Stage::load(), env).await
    }

    /// On a stage the test prepared first (e.g. a stand-in pod the serve process is to introspect).
    pub async fn on(stage: Stage, env: &[(&str, &str)]) -> Self {
        let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
        let serve = Serve::start_with_env(&stage, env);
        Self {
            stage,
            fake,
            serve,
            agents: Vec::new(),
        }
    }

    /// A new agent whose runs use the stage's namespace.
    pub fn agent(&mut self) -> String {
        self.agent_in(NAMESPACE)
    }

    /// A new agent whose runs use `namespace`; [`World::finish`] checks that namespace.
    pub fn agent_in(&mut self, namespace: &str) -> String {
        let agent = uuid();
        self.agents.push((agent.clone(), namespace.to_owned()));
        agent
    }

    /// The stage's agent config ([`Stage::agent_config`]) against this world's fake API, plus `extra`.
    pub fn config(&self, agent: &str, extra: Value) -> Value {
        self.stage.agent_config(&self.fake, agent, extra)
    }

    /// A new agent ([`World::agent`]) and its config ([`World::config`] with `extra`).
    pub fn new_agent(&mut self, extra: Value) -> (String, Value) {
        let agent = self.agent();
        let config = self.config(&agent, extra);
        (agent, config)
    }

    /// Sends a run of `agent` with a fresh session; its execute id.
    pub async fn send(&mut self, agent: &str, config: &Value, prompt: &str) -> String {
        let params = self.stage.params(agent, config, prompt, None);
        self.serve.send_execute(&params).await
    }

    /// Runs `agent` with a fresh session, to its result.
    pub async fn run(&mut self, agent: &str, config: &Value, prompt: &str) -> RunRecord {
        let params = self.stage.params(agent, config, prompt, None);
        self.serve.execute(&params).await
    }

    /// Starts a run of a new agent (config: `extra`) whose prompt holds the model's stream (`[[fake:hold …]]`),
    /// and waits until the fake API holds it, i.e. claude runs in its pod. The agent and the execute id.
    pub async fn start_held_run(&mut self, extra: Value, prompt: &str) -> (String, String) {
        let (agent, config) = self.new_agent(extra);
        let id = self.send(&agent, &config, prompt).await;
        assert!(
            self.fake.wait_for_held(Duration::from_secs(120)).await,
            "the fake API is holding the stream mid-way"
        );
        (agent, id)
    }

    /// No Job, pod, Lease or run Secret of `agent` is left (bounded wait, see [`Stage::assert_nothing_left_in`]).
    pub async fn assert_nothing_left(&self, agent: &str) {
        let namespace = self
            .agents
            .iter()
            .find(|(a, _)| a == agent)
            .map_or(NAMESPACE, |(_, ns)| ns.as_str());
        self.stage.assert_nothing_left_in(namespace, agent).await;
    }

    /// The end of every stage test: nothing of any of its agents is left; then the fake API lets go of any stream
    /// it still holds (a cancelled or deleted run's), and the serve process shuts down.
    pub async fn finish(self) {
        for (agent, namespace) in &self.agents {
            self.stage.assert_nothing_left_in(namespace, agent).await;
        }
        self.fake.release();
        self.serve.shutdown().await;
    }
}
