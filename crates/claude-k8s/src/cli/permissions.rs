//! Every permission a run needs in the Jobs' namespace, as the Role rules of deploy/role.yaml grant them; the
//! environment checks ask for each with a SelfSubjectAccessReview and name the rule that is missing.

/// One permission the adapter uses, as a Role rule would grant it.
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub verb: &'static str,
    pub why: &'static str,
}

/// Every permission a run needs in the Jobs' namespace (deploy/role.yaml grants exactly these).
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "create",
        why: "launch a run",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "get",
        why: "follow a run",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "list",
        why: "one Job per agent",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "watch",
        why: "follow a run without polling",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "delete",
        why: "cleanup and cancel",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "patch",
        why: "mark a retained Job's result as reported",
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: "",
        verb: "get",
        why: "self-introspection",
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: "",
        verb: "list",
        why: "find the run's pod",
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: "",
        verb: "watch",
        why: "follow the pod's status",
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: "",
        verb: "delete",
        why: "force-stop a pod that outlives its grace period",
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: "log",
        verb: "get",
        why: "stream the transcript",
    },
    Permission {
        group: "",
        resource: "secrets",
        subresource: "",
        verb: "create",
        why: "the run Secret (prompt, run token)",
    },
    Permission {
        group: "",
        resource: "secrets",
        subresource: "",
        verb: "patch",
        why: "give a Job kept by retainJobs its run Secret",
    },
    Permission {
        group: "",
        resource: "secrets",
        subresource: "",
        verb: "delete",
        why: "remove the run Secret",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        verb: "get",
        why: "one Job per agent: read the agent's Lease",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        verb: "create",
        why: "one Job per agent: take the agent's Lease",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        verb: "update",
        why: "one Job per agent: take over a stale Lease",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        verb: "delete",
        why: "one Job per agent: release the agent's Lease",
    },
    Permission {
        group: "",
        resource: "events",
        subresource: "",
        verb: "list",
        why: "name the cause of a failed start (FailedCreate, FailedMount)",
    },
    Permission {
        group: "",
        resource: "persistentvolumeclaims",
        subresource: "",
        verb: "get",
        why: "check the shared PVC",
    },
];

impl Permission {
    /// The check's code, e.g. `k8s_rbac_pods_log_get`.
    pub fn code(&self) -> String {
        let res = if self.subresource.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}_{}", self.resource, self.subresource)
        };
        format!("k8s_rbac_{}_{}", res.trim_end_matches('s'), self.verb)
    }

    /// The Role rule that grants it, as the fix names it.
    pub fn rule(&self) -> String {
        let res = if self.subresource.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        format!(
            "- apiGroups: [\"{}\"]  resources: [\"{res}\"]  verbs: [\"{}\"]",
            self.group, self.verb
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_codes_and_rules_name_the_fix() {
        let log = PERMISSIONS.iter().find(|p| p.subresource == "log").unwrap();
        assert_eq!(log.code(), "k8s_rbac_pods_log_get");
        assert_eq!(
            log.rule(),
            "- apiGroups: [\"\"]  resources: [\"pods/log\"]  verbs: [\"get\"]"
        );
        let create = &PERMISSIONS[0];
        assert_eq!(create.code(), "k8s_rbac_job_create");
        let codes: std::collections::BTreeSet<String> =
            PERMISSIONS.iter().map(Permission::code).collect();
        assert_eq!(
            codes.len(),
            PERMISSIONS.len(),
            "one distinct code per permission"
        );
    }

    /// The flow-style lists of deploy/role.yaml (`key: ["a", "b"]`), one rule per `- apiGroups:` item.
    fn role_yaml_rules() -> Vec<(String, Vec<String>, Vec<String>)> {
        let text = include_str!("../../../../deploy/role.yaml");
        let list = |line: &str| -> Vec<String> {
            let inner = line
                .split_once('[')
                .and_then(|(_, rest)| rest.rsplit_once(']'))
                .map(|(inner, _)| inner)
                .unwrap_or_else(|| panic!("not a flow list: {line}"));
            inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.trim_matches('"').to_owned())
                .collect()
        };
        let mut rules = Vec::new();
        let mut group = None;
        let mut resources = None;
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let t = line.trim_start_matches(['-', ' ']);
            if let Some(v) = t.strip_prefix("apiGroups:") {
                let groups = list(v);
                assert_eq!(groups.len(), 1, "one API group per rule: {line}");
                group = Some(groups[0].clone());
            } else if let Some(v) = t.strip_prefix("resources:") {
                resources = Some(list(v));
            } else if let Some(v) = t.strip_prefix("verbs:") {
                rules.push((
                    group.take().expect("apiGroups before verbs"),
                    resources.take().expect("resources before verbs"),
                    list(v),
                ));
            }
        }
        rules
    }

    #[test]
    fn deploy_role_grants_exactly_the_checked_permissions() {
        let mut granted = std::collections::BTreeSet::new();
        for (group, resources, verbs) in role_yaml_rules() {
            // Cluster-scoped: a Role cannot grant it (documented there); checked implicitly, since every
            // permission check is a SelfSubjectAccessReview and fails with that hint when it is not allowed.
            if resources == ["selfsubjectaccessreviews"] {
                assert_eq!(
                    (group.as_str(), verbs.as_slice()),
                    ("authorization.k8s.io", &["create".to_owned()][..])
                );
                continue;
            }
            for r in &resources {
                for v in &verbs {
                    assert!(
                        granted.insert((group.clone(), r.clone(), v.clone())),
                        "deploy/role.yaml grants {group}/{r} {v} twice"
                    );
                }
            }
        }
        let checked: std::collections::BTreeSet<_> = PERMISSIONS
            .iter()
            .map(|p| {
                let r = if p.subresource.is_empty() {
                    p.resource.to_owned()
                } else {
                    format!("{}/{}", p.resource, p.subresource)
                };
                (p.group.to_owned(), r, p.verb.to_owned())
            })
            .collect();
        assert_eq!(checked.len(), PERMISSIONS.len());
        assert_eq!(
            granted, checked,
            "deploy/role.yaml and checks::PERMISSIONS must agree exactly"
        );
    }

    #[test]
    fn each_missing_permission_names_a_rule_that_is_in_deploy_role() {
        let rules = role_yaml_rules();
        for p in PERMISSIONS {
            let rule = p.rule();
            let res = rule
                .split("resources: [\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert!(
                rules.iter().any(|(g, rs, vs)| g == p.group
                    && rs.iter().any(|r| r == res)
                    && vs.iter().any(|v| v == p.verb)),
                "{rule} is not granted by deploy/role.yaml"
            );
        }
    }
}
