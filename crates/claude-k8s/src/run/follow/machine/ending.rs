//! How the machine ends a run: the ending known, the log's tail read, the ending said where it matters; and the one
//! early end, on the exit line and the exit probe after a successful result.

use std::time::Instant;

use super::*;

impl Follow {
    /// The ending is known: the log follower reads the tail (if it ever started), then the machine finishes.
    pub(super) fn end(&mut self, ending: Ending, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::EndLog);
        if self.container_ended && self.log_started && !self.log_ended {
            out.push(Action::ReadTail);
        }
        self.phase = Phase::Draining {
            ending,
            until: now + LOG_DRAIN_TIMEOUT,
        };
        if !self.log_started || self.log_ended {
            self.finish(out);
        }
    }

    /// Says how the run ended where it matters to the user, then finishes.
    pub(super) fn finish(&mut self, out: &mut Vec<Action>) {
        let Phase::Draining { ending, .. } = std::mem::replace(&mut self.phase, Phase::Done) else {
            return;
        };
        match &ending {
            Ending::Cancelled => out.push(Action::Progress(format!(
                "cancelling: deleting Job {}",
                self.job
            ))),
            Ending::Failed(f) => {
                out.push(Action::Warn(with_last_lines(&f.message, &self.transcript)))
            }
            _ => {}
        }
        out.push(Action::Finish(ending));
    }

    /// Whether the shell's exit line may end the run early: claude runs (nobody is stopping or deleting it) and
    /// its final `result` says success, so that the result does not depend on how the container ended.
    pub(super) fn exit_hint_counts(&self) -> bool {
        let t = &self.transcript;
        self.phase == Phase::Running
            && self.pod_deleting_until.is_none()
            && t.awaiting_exit
            && t.subtype() == Some("success")
            && !t.is_error()
    }

    /// Claude has exited, known from its log: after its successful result the shell's exit line (code 0) was the
    /// last line, and the kubelet ended the exit probe, opened after that line, because the container no longer
    /// runs. The probe read the log to its end, so nothing is left to read. The code is the shell's (the agent
    /// could have printed the line itself); a successful result reports exit code 0 whatever the container's, so
    /// what the user sees is the same as after the terminated state, a second sooner.
    pub(super) fn exited_by_log(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::Progress(format!(
            "pod {}: claude exited with code 0; the kubelet ended its log (the container has stopped)",
            self.pod_name.as_deref().unwrap_or("?")
        )));
        out.push(Action::AbortLog);
        self.phase = Phase::Draining {
            ending: Ending::Exited(ContainerEnd {
                exit_code: 0,
                reason: Some("Completed".into()),
                ..Default::default()
            }),
            until: now,
        };
        self.finish(out);
    }
}
