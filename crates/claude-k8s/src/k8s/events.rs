//! The last word of Kubernetes on an object, from its Warning events, for failure messages.
//!
//! Some causes exist only as events: a Job whose pods cannot be created (FailedCreate: a missing service account,
//! a quota, an admission webhook), a pod stuck in ContainerCreating (FailedMount: a missing Secret or claim). The
//! adapter reads them once, when a run fails, never while it runs: a run that goes well costs no event reads.

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};

/// The newest Warning event of the object, as `Reason: message` (with how often it happened), if any. Errors
/// (no `events list` permission included) count as none: an event only adds detail to a failure already known.
pub async fn latest_warning(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Option<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let fields = format!("involvedObject.kind={kind},involvedObject.name={name}");
    match events.list(&ListParams::default().fields(&fields)).await {
        Ok(list) => describe_latest(&list.items),
        Err(e) => {
            tracing::debug!(error = %e, kind, name, "cannot read events");
            None
        }
    }
}

/// The newest Warning among `events`. Pure.
pub fn describe_latest(events: &[Event]) -> Option<String> {
    let newest = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        })?;
    let reason = newest.reason.as_deref().unwrap_or("Warning");
    let message = newest.message.as_deref().unwrap_or("").trim();
    let times = match newest.count {
        Some(n) if n > 1 => format!(" ({n} times)"),
        _ => String::new(),
    };
    Some(format!("{reason}: {message}{times}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, reason: &str, message: &str, at: &str, count: i32) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("e-{reason}-{at}")},
            "involvedObject": {},
            "type": kind, "reason": reason, "message": message,
            "lastTimestamp": at, "count": count
        }))
        .unwrap()
    }

    #[test]
    fn the_newest_warning_wins_normal_events_are_ignored() {
        let events = [
            event("Warning", "FailedCreate", "old", "2026-11-25T10:00:00Z", 1),
            event(
                "Warning",
                "FailedCreate",
                "error looking up service account x",
                "2026-11-25T10:00:05Z",
                4,
            ),
            event(
                "Normal",
                "SuccessfulCreate",
                "newer but normal",
                "2026-11-25T10:00:09Z",
                1,
            ),
        ];
        assert_eq!(
            describe_latest(&events).as_deref(),
            Some("FailedCreate: error looking up service account x (4 times)")
        );
        assert_eq!(describe_latest(&events[2..]), None);
        assert_eq!(describe_latest(&[]), None);
    }
}
