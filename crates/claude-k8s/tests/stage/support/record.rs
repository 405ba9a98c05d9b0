//! What the host saw for one execute, and the ways the tests read it.

use serde_json::Value;

/// What the host saw for one execute.
#[derive(Debug, Default)]
pub struct RunRecord {
    pub logs: Vec<(String, String)>,
    /// When each of `logs` arrived (wall clock, to compare with times the container wrote).
    pub log_at: Vec<std::time::SystemTime>,
    pub result_at: Option<std::time::SystemTime>,
    pub meta: Option<Value>,
    pub result: Value,
}

impl RunRecord {
    pub fn log_text(&self) -> String {
        self.logs.iter().map(|(_, c)| c.as_str()).collect()
    }

    pub fn stdout_json(&self) -> Vec<Value> {
        self.logs
            .iter()
            .filter(|(s, _)| s == "stdout")
            .filter_map(|(_, c)| serde_json::from_str(c.trim_end()).ok())
            .collect()
    }

    /// What the host saw, printed when an assertion is about to fail.
    pub fn dump(&self) -> String {
        format!("{:#}\n--- log ---\n{}", self.result, self.log_text())
    }

    /// The result's `errorMessage` ("" without one).
    pub fn message(&self) -> String {
        self.result["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The result's `errorMeta.hint` ("" without one).
    pub fn hint(&self) -> String {
        self.result["errorMeta"]["hint"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The adapter's own progress lines (`[claude-k8s] …`).
    pub fn progress_lines(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.starts_with("[claude-k8s]"))
            .map(str::to_owned)
            .collect()
    }

    /// Claude's stdout lines as forwarded, without the adapter's own progress lines.
    pub fn transcript_lines(&self) -> Vec<String> {
        self.logs
            .iter()
            .filter(|(stream, _)| stream == "stdout")
            .flat_map(|(_, chunk)| chunk.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|l| !l.starts_with("[claude-k8s]"))
            .collect()
    }
}
