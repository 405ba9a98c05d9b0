//! A refusal of the policy: each refused field with the setting that would allow it, as a message and as the
//! run's `policy_denied` failure.

use std::fmt;

use crate::run::outcome::{ErrorCode, Failure, PolicyDenial};

/// One refused field: where it is in the config and the policy setting that would allow it.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub field: String,
    /// The setting to add, as JSON (e.g. `"podSpecPatch": {"allowHostNamespaces": ["hostPID"]}`); `None` when no
    /// setting allows it (then `why` says so).
    pub setting: Option<String>,
    pub why: Option<String>,
}

impl Denial {
    /// A refusal that `setting` (a key of the policy's `podSpecPatch` object) lifts.
    pub fn patch(field: &str, setting: &str) -> Self {
        Self::top(field, &format!("\"podSpecPatch\": {{{setting}}}"))
    }

    /// A refusal that a top-level policy `setting` lifts.
    pub fn top(field: &str, setting: &str) -> Self {
        Self {
            field: field.to_owned(),
            setting: Some(setting.to_owned()),
            why: None,
        }
    }

    pub(super) fn never(field: &str, why: &str) -> Self {
        Self {
            field: field.to_owned(),
            setting: None,
            why: Some(why.to_owned()),
        }
    }
}

#[derive(Debug, Default)]
pub struct Denials(pub Vec<Denial>);

impl Denials {
    pub fn push(&mut self, d: Denial) {
        self.0.push(d);
    }
}

/// The fields a config asked for that the policy refuses; nothing was created.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    pub denials: Vec<Denial>,
    /// [`Source::setting_place`] of the policy that refused.
    pub place: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.denials.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} is not allowed by the operator policy", d.field)?;
            if let Some(why) = &d.why {
                write!(f, " ({why})")?;
            }
            if let Some(setting) = &d.setting {
                write!(f, "; to allow it set {setting} in {}", self.place)?;
            }
        }
        Ok(())
    }
}

impl Denied {
    /// The failure of a refused run: `policy_denied`, the message, and each field with its setting in
    /// `errorMeta.policyDenied`.
    pub fn failure(&self) -> Failure {
        Failure {
            policy_denied: self
                .denials
                .iter()
                .map(|d| PolicyDenial {
                    field: d.field.clone(),
                    setting: d.setting.clone(),
                    why: d.why.clone(),
                })
                .collect(),
            ..Failure::new(
                ErrorCode::PolicyDenied,
                self.to_string(),
                Some(&format!(
                    "only the operator can allow these, in {}; docs/security.md lists every setting",
                    self.place
                )),
            )
        }
    }
}
