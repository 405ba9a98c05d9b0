//! The agent's `adapterConfig`, parsed and validated into [`AgentConfig`].
//!
//! Pure: no I/O. Paperclip's UI stores fields flat, so a dotted key such as `resources.requests.cpu` may arrive as
//! a literal key; every lookup accepts both that and the nested form. A bad value is a [`ConfigError`] naming the
//! field and the accepted form, raised before anything is created in the cluster.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use crate::k8s::labels::{is_label_key, is_label_value};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid adapterConfig field `{field}`: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub requests_cpu: String,
    pub requests_memory: String,
    pub limits_cpu: String,
    pub limits_memory: String,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            requests_cpu: "1000m".into(),
            requests_memory: "2Gi".into(),
            limits_cpu: "4000m".into(),
            limits_memory: "8Gi".into(),
        }
    }
}

/// Everything an agent can configure, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    pub model: Option<String>,
    pub effort: Option<String>,
    pub max_turns_per_run: u32,
    pub dangerously_skip_permissions: bool,
    pub instructions_file_path: Option<String>,
    pub extra_args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub namespace: Option<String>,
    pub image: Option<String>,
    pub image_pull_policy: String,
    pub init_image: String,
    pub kubeconfig: Option<String>,
    pub service_account_name: Option<String>,
    pub resources: Resources,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Value>,
    pub labels: BTreeMap<String, String>,
    pub ttl_seconds_after_finished: u32,
    pub retain_jobs: bool,
    pub pod_spec_patch: Option<Value>,
    pub paperclip_api_url: Option<String>,
    pub timeout_sec: u64,
    pub grace_sec: u64,
}

pub const DEFAULT_INIT_IMAGE: &str = "busybox:1.36";
/// Upper bounds of the numeric fields: far above any real use, and low enough that time arithmetic on them cannot
/// overflow (a `timeoutSec` of 1e300 would otherwise panic a run after its Job exists).
pub const MAX_TIMEOUT_SEC: u64 = 7 * 24 * 3600;
pub const MAX_GRACE_SEC: u64 = 3600;
pub const MAX_TTL_SEC: u64 = 30 * 24 * 3600;
pub const MAX_TURNS: u64 = 100_000;
pub const EFFORTS: [&str; 3] = ["low", "medium", "high"];
pub const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];

impl AgentConfig {
    pub fn parse(raw: &Map<String, Value>) -> Result<Self, ConfigError> {
        let cfg = Fields(raw);
        let effort = cfg.string("effort")?;
        if let Some(e) = &effort
            && !EFFORTS.contains(&e.as_str())
        {
            return Err(invalid(
                "effort",
                format!("`{e}` is not one of low, medium, high"),
            ));
        }
        let image_pull_policy = cfg
            .string("imagePullPolicy")?
            .unwrap_or_else(|| "IfNotPresent".into());
        if !PULL_POLICIES.contains(&image_pull_policy.as_str()) {
            return Err(invalid(
                "imagePullPolicy",
                format!("`{image_pull_policy}` is not one of Always, IfNotPresent, Never"),
            ));
        }
        let defaults = Resources::default();
        let resources = Resources {
            requests_cpu: cfg
                .quantity("resources.requests.cpu")?
                .unwrap_or(defaults.requests_cpu),
            requests_memory: cfg
                .quantity("resources.requests.memory")?
                .unwrap_or(defaults.requests_memory),
            limits_cpu: cfg
                .quantity("resources.limits.cpu")?
                .unwrap_or(defaults.limits_cpu),
            limits_memory: cfg
                .quantity("resources.limits.memory")?
                .unwrap_or(defaults.limits_memory),
        };
        let mut extra_args = cfg.string_list("extraArgs")?;
        if extra_args.is_empty() {
            extra_args = cfg.string_list("args")?;
        }
        Ok(Self {
            model: cfg.string("model")?,
            effort,
            max_turns_per_run: cfg.bounded("maxTurnsPerRun", MAX_TURNS)?.unwrap_or(0) as u32,
            dangerously_skip_permissions: cfg
                .boolean("dangerouslySkipPermissions")?
                .unwrap_or(true),
            instructions_file_path: cfg.string("instructionsFilePath")?,
            extra_args,
            env: cfg.string_map("env")?,
            cwd: cfg.string("cwd")?,
            namespace: cfg.string("namespace")?,
            image: cfg.string("image")?,
            image_pull_policy,
            init_image: cfg
                .string("initImage")?
                .unwrap_or_else(|| DEFAULT_INIT_IMAGE.into()),
            kubeconfig: cfg.string("kubeconfig")?,
            service_account_name: cfg.string("serviceAccountName")?,
            resources,
            node_selector: cfg.label_map("nodeSelector")?,
            tolerations: cfg.tolerations("tolerations")?,
            labels: cfg.label_map("labels")?,
            ttl_seconds_after_finished: cfg
                .bounded("ttlSecondsAfterFinished", MAX_TTL_SEC)?
                .unwrap_or(300) as u32,
            retain_jobs: cfg.boolean("retainJobs")?.unwrap_or(false),
            pod_spec_patch: cfg.json_object("podSpecPatch")?,
            paperclip_api_url: cfg.string("paperclipApiUrl")?,
            timeout_sec: cfg.bounded("timeoutSec", MAX_TIMEOUT_SEC)?.unwrap_or(0),
            grace_sec: cfg.bounded("graceSec", MAX_GRACE_SEC)?.unwrap_or(60),
        })
    }
}

/// Lookup helpers over the raw map; each returns `Ok(None)` for an absent, null or empty value.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// The flat literal key first (how the UI stores it), then the nested path.
    fn get(&self, key: &str) -> Option<&Value> {
        let found = self.0.get(key).or_else(|| {
            let mut parts = key.split('.');
            let mut cur = self.0.get(parts.next()?)?;
            for p in parts {
                cur = cur.as_object()?.get(p)?;
            }
            Some(cur)
        })?;
        match found {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            v => Some(v),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(invalid(key, format!("expected a string, got {other}"))),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                _ => Err(invalid(
                    key,
                    format!("`{s}` is not a boolean (true or false)"),
                )),
            },
            Some(other) => Err(invalid(key, format!("expected true or false, got {other}"))),
        }
    }

    fn non_negative(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        let bad = |v: &dyn std::fmt::Display| {
            invalid(key, format!("`{v}` is not a whole number of 0 or more"))
        };
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => Ok(Some(u)),
                (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 => Ok(Some(f as u64)),
                _ => Err(bad(n)),
            },
            Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| bad(s)),
            Some(other) => Err(bad(other)),
        }
    }

    /// [`Self::non_negative`] with an upper bound, named in the error.
    fn bounded(&self, key: &str, max: u64) -> Result<Option<u64>, ConfigError> {
        match self.non_negative(key)? {
            Some(n) if n > max => Err(invalid(key, format!("must be at most {max}"))),
            n => Ok(n),
        }
    }

    fn quantity(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(q) = self.string(key)? else {
            return Ok(None);
        };
        if is_quantity(&q) {
            Ok(Some(q))
        } else {
            Err(invalid(
                key,
                format!(
                    "`{q}` is not a Kubernetes quantity (for example 500m, 2, 1.5, 512Mi, 8Gi)"
                ),
            ))
        }
    }

    /// A list of strings: a JSON array, a JSON array in a string, or a whitespace-separated string.
    fn string_list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let not_list = || {
            invalid(
                key,
                "expected a list of strings such as [\"--foo\", \"bar\"]",
            )
        };
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(not_list()),
                })
                .collect(),
            Some(Value::String(s)) if s.trim_start().starts_with('[') => {
                serde_json::from_str::<Vec<String>>(s).map_err(|_| not_list())
            }
            Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
            Some(_) => Err(not_list()),
        }
    }

    /// A string map: a JSON object, a JSON object in a string, or `key=value` lines.
    fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let not_map = || {
            invalid(
                key,
                "expected a JSON object of strings or `key=value` lines",
            )
        };
        let object = match self.get(key) {
            None => return Ok(BTreeMap::new()),
            Some(Value::Object(o)) => o.clone(),
            Some(Value::String(s)) if s.trim_start().starts_with('{') => {
                serde_json::from_str::<Map<String, Value>>(s).map_err(|_| not_map())?
            }
            Some(Value::String(s)) => {
                let mut out = BTreeMap::new();
                for line in s
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    let (k, v) = line.split_once('=').ok_or_else(not_map)?;
                    out.insert(k.trim().to_owned(), v.trim().to_owned());
                }
                return Ok(out);
            }
            Some(_) => return Err(not_map()),
        };
        object
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                Value::Number(n) => Ok((k, n.to_string())),
                Value::Bool(b) => Ok((k, b.to_string())),
                // A Paperclip env binding that was not resolved: {"type":"plain","value":"…"}.
                Value::Object(o) if o.get("value").is_some_and(Value::is_string) => {
                    Ok((k, o["value"].as_str().unwrap_or_default().to_owned()))
                }
                _ => Err(not_map()),
            })
            .collect()
    }

    /// A string map whose keys and values Kubernetes accepts as label keys and values (labels, nodeSelector).
    fn label_map(&self, key: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let map = self.string_map(key)?;
        for (k, v) in &map {
            if !is_label_key(k) {
                return Err(invalid(
                    key,
                    format!(
                        "`{k}` is not a Kubernetes label key (an optional DNS prefix and `/`, then at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit, e.g. example.com/team)"
                    ),
                ));
            }
            if !is_label_value(v) {
                return Err(invalid(
                    key,
                    format!(
                        "`{v}` (for `{k}`) is not a Kubernetes label value (at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit, or empty)"
                    ),
                ));
            }
        }
        Ok(map)
    }

    fn tolerations(&self, key: &str) -> Result<Vec<Value>, ConfigError> {
        let expected = "expected a JSON array of tolerations such as [{\"key\":\"gpu\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]";
        let items = match self.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(a)) => a.clone(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(a)) => a,
                Ok(_) | Err(_) => return Err(invalid(key, format!("not valid JSON: {expected}"))),
            },
            Some(_) => return Err(invalid(key, expected)),
        };
        for t in &items {
            if serde_json::from_value::<k8s_openapi::api::core::v1::Toleration>(t.clone()).is_err()
                || !t.is_object()
            {
                return Err(invalid(
                    key,
                    format!("`{t}` is not a toleration: {expected}"),
                ));
            }
        }
        Ok(items)
    }

    fn json_object(&self, key: &str) -> Result<Option<Value>, ConfigError> {
        let expected =
            "expected a JSON object (a merge patch for the pod spec, e.g. {\"hostNetwork\":true})";
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => Ok(Some(v)),
                _ => Err(invalid(key, expected)),
            },
            Some(_) => Err(invalid(key, expected)),
        }
    }
}

/// A Kubernetes resource quantity: a decimal number with an optional binary, decimal or exponent suffix.
pub fn is_quantity(q: &str) -> bool {
    let body = q.strip_prefix(['+', '-']).unwrap_or(q);
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(split);
    let number_ok = !number.is_empty()
        && number != "."
        && number.matches('.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| {
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
        })
        .unwrap_or(false);
    number_ok && suffix_ok
}

#[cfg(test)]
mod tests;
