//! The kubelet's `containerLogs` endpoint for simulated containers: which lines a request gets, and the stream
//! that delivers them (following the container until it ends when asked to).
//!
//! The query parameters are the kubelet's: `follow`, `timestamps`, `sinceTime` (RFC 3339), `sinceSeconds`,
//! `tailLines`, `limitBytes`, `previous`. As in the kubelet, `tailLines` picks the last lines first and
//! `sinceTime` then drops those written before it (a line stamped exactly at `sinceTime` is kept); lines carry
//! RFC 3339 timestamps with nanoseconds in UTC, as the kubelet writes them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use crate::script::{End, Script, until};

/// Where a simulated container is in its life.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Container {
    /// Not started (the pod is being initialized).
    Waiting,
    Running {
        started: Timestamp,
    },
    Terminated {
        started: Timestamp,
        end: End,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    pub follow: bool,
    pub timestamps: bool,
    pub since: Option<Timestamp>,
    pub tail: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub previous: bool,
}

impl LogQuery {
    /// The query of a request, or the error the kubelet would answer with (400).
    pub fn parse(q: &HashMap<String, String>, now: Timestamp) -> Result<Self, String> {
        let flag = |k: &str| -> Result<bool, String> {
            match q.get(k).map(String::as_str) {
                None | Some("") | Some("false") | Some("0") => Ok(false),
                Some("true") | Some("1") => Ok(true),
                Some(v) => Err(format!("{k}={v:?} is not a boolean")),
            }
        };
        let number = |k: &str| -> Result<Option<i64>, String> {
            q.get(k)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("{k}={v:?} is not an integer"))
                })
                .transpose()
        };
        let since_time = q
            .get("sinceTime")
            .map(|v| {
                v.parse::<Timestamp>()
                    .map_err(|e| format!("sinceTime={v:?} is not an RFC 3339 time: {e}"))
            })
            .transpose()?;
        let since_seconds = number("sinceSeconds")?;
        if since_time.is_some() && since_seconds.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        let since = match since_seconds {
            Some(s) if s < 1 => return Err("sinceSeconds must be greater than 0".into()),
            Some(s) => Some(
                now.checked_sub(SignedDuration::from_secs(s))
                    .unwrap_or(Timestamp::MIN),
            ),
            None => since_time,
        };
        let tail = match number("tailLines")? {
            Some(n) if n < 0 => return Err("tailLines must be greater than or equal to 0".into()),
            n => n.map(|n| n as usize),
        };
        let limit_bytes = match number("limitBytes")? {
            Some(n) if n < 1 => return Err("limitBytes must be greater than 0".into()),
            n => n.map(|n| n as usize),
        };
        Ok(Self {
            follow: flag("follow")?,
            timestamps: flag("timestamps")?,
            since,
            tail,
            limit_bytes,
            previous: flag("previous")?,
        })
    }
}

/// The kubelet's timestamp: RFC 3339 in UTC with all nine digits of nanoseconds.
pub fn format_timestamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
}

/// The index of the first line to send, given the lines written so far (`written`) and the query.
pub fn first_line(script: &Script, started: Timestamp, written: usize, q: &LogQuery) -> usize {
    let mut first = q.tail.map_or(0, |n| written.saturating_sub(n));
    if let Some(since) = q.since {
        while first < written && script.line_at(started, first) < since {
            first += 1;
        }
        if first == written {
            // Lines not written yet are all after `since` only if they are due after it.
            while first < script.len() && script.line_at(started, first) < since {
                first += 1;
            }
        }
    }
    first
}

/// One line as the kubelet sends it.
fn render(script: &Script, started: Timestamp, i: usize, timestamps: bool) -> String {
    let text = &script.transcript.lines[i];
    if timestamps {
        format!("{} {text}\n", format_timestamp(script.line_at(started, i)))
    } else {
        format!("{text}\n")
    }
}

/// The log of a container that has started, as a stream of chunks: the lines written so far (from the query's
/// start), then, when following, each further line at the moment it is written, until the container has ended.
pub fn stream(
    script: Arc<Script>,
    mut state: watch::Receiver<Container>,
    q: LogQuery,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    async_stream::stream! {
        let (started, mut end) = match *state.borrow_and_update() {
            Container::Waiting => return,
            Container::Running { started } => (started, None),
            Container::Terminated { started, end } => (started, Some(end)),
        };
        let now = Timestamp::now();
        let written_by = |end: Option<End>, now: Timestamp| {
            script.lines_until(started, end.map_or(now, |e| e.at.min(now)))
        };
        let mut next = first_line(&script, started, written_by(end, now), &q);
        let mut budget = q.limit_bytes.unwrap_or(usize::MAX);
        loop {
            // Everything written by now, in one chunk.
            let written = written_by(end, Timestamp::now());
            if next < written {
                let mut chunk = String::new();
                while next < written {
                    chunk.push_str(&render(&script, started, next, q.timestamps));
                    next += 1;
                }
                if chunk.len() >= budget {
                    chunk.truncate(floor_char_boundary(&chunk, budget));
                    yield Ok(Bytes::from(chunk));
                    return;
                }
                budget -= chunk.len();
                yield Ok(Bytes::from(chunk));
            }
            if !q.follow || end.is_some() {
                return;
            }
            // Wait for the next line to be due, or for the container to end.
            let due = (next < script.len()).then(|| script.line_at(started, next));
            let sleep = async {
                match due {
                    Some(at) => tokio::time::sleep(until(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                changed = state.changed() => {
                    if changed.is_err() {
                        // The pod is gone from the node: its log ends with what was written.
                        end = Some(End { at: Timestamp::now(), exit_code: 0 });
                        continue;
                    }
                    if let Container::Terminated { end: e, .. } = *state.borrow_and_update() {
                        end = Some(e);
                    }
                }
            }
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::script::{Defaults, Transcript, Transcripts};

    fn script(lines: usize, gap_ms: u64) -> Arc<Script> {
        let text: String = (0..lines)
            .map(|i| format!("{{\"n\":{i}}}\n"))
            .chain(["{\"type\":\"result\",\"is_error\":false}\n".to_owned()])
            .collect();
        let mut all = BTreeMap::new();
        all.insert("t".to_owned(), Arc::new(Transcript::parse("t", &text)));
        let d = Defaults {
            transcript: "t".into(),
            start: Duration::from_millis(0),
            line_gap: Duration::from_millis(gap_ms),
            exit_after: Duration::from_millis(20),
        };
        Arc::new(Script::from_env(&BTreeMap::new(), &Transcripts(all), &d))
    }

    fn query(pairs: &[(&str, &str)]) -> Result<LogQuery, String> {
        let q = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogQuery::parse(&q, "2026-01-01T00:01:00Z".parse().unwrap())
    }

    #[test]
    fn parses_the_kubelets_parameters() {
        let q = query(&[
            ("follow", "true"),
            ("timestamps", "true"),
            ("sinceTime", "2026-01-01T00:00:05Z"),
            ("tailLines", "3"),
            ("limitBytes", "100"),
        ])
        .unwrap();
        assert!(q.follow && q.timestamps && !q.previous);
        assert_eq!(q.since, Some("2026-01-01T00:00:05Z".parse().unwrap()));
        assert_eq!((q.tail, q.limit_bytes), (Some(3), Some(100)));
        let q = query(&[("sinceSeconds", "10")]).unwrap();
        assert_eq!(q.since, Some("2026-01-01T00:00:50Z".parse().unwrap()));
        for bad in [
            &[("follow", "yes")][..],
            &[("sinceTime", "yesterday")],
            &[("sinceTime", "2026-01-01T00:00:05Z"), ("sinceSeconds", "1")],
            &[("tailLines", "-1")],
            &[("limitBytes", "0")],
        ] {
            assert!(query(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_have_nine_digits_of_nanoseconds() {
        let t: Timestamp = "2026-01-01T00:00:01.5Z".parse().unwrap();
        assert_eq!(format_timestamp(t), "2026-01-01T00:00:01.500000000Z");
        let t: Timestamp = "2026-01-01T00:00:01Z".parse().unwrap();
        assert_eq!(format_timestamp(t), "2026-01-01T00:00:01.000000000Z");
    }

    #[test]
    fn tail_then_since_pick_the_first_line() {
        let s = script(9, 1000); // 10 lines, one per second from t0
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let q = |pairs: &[(&str, &str)]| query(pairs).unwrap();
        assert_eq!(first_line(&s, t0, 10, &q(&[])), 0);
        assert_eq!(first_line(&s, t0, 10, &q(&[("tailLines", "3")])), 7);
        assert_eq!(first_line(&s, t0, 10, &q(&[("tailLines", "30")])), 0);
        // A line stamped exactly at sinceTime is kept.
        let since = &q(&[("sinceTime", "2026-01-01T00:00:04Z")]);
        assert_eq!(first_line(&s, t0, 10, since), 4);
        assert_eq!(
            first_line(
                &s,
                t0,
                10,
                &q(&[("sinceTime", "2026-01-01T00:00:04Z"), ("tailLines", "2")])
            ),
            8
        );
        // Following from a time after what is written so far: the first line due at or after it.
        assert_eq!(first_line(&s, t0, 2, since), 4);
    }

    #[tokio::test]
    async fn a_followed_log_delivers_each_line_when_due_and_ends_with_the_container() {
        let s = script(3, 40);
        let started = Timestamp::now();
        let (tx, rx) = watch::channel(Container::Running { started });
        let q = query(&[("follow", "true"), ("timestamps", "true")]).unwrap();
        let body = stream(s.clone(), rx, q);
        let ender = {
            let s = s.clone();
            tokio::spawn(async move {
                let end = s.natural_end(started);
                tokio::time::sleep(until(end.at)).await;
                tx.send(Container::Terminated { started, end }).unwrap();
                tx
            })
        };
        let chunks: Vec<(Timestamp, String)> = body
            .map(|c| {
                (
                    Timestamp::now(),
                    String::from_utf8(c.unwrap().to_vec()).unwrap(),
                )
            })
            .collect()
            .await;
        let _tx = ender.await.unwrap();
        let text: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (i, line) in lines.iter().enumerate() {
            let (ts, rest) = line.split_once(' ').unwrap();
            assert_eq!(ts, format_timestamp(s.line_at(started, i)));
            assert_eq!(rest, s.transcript.lines[i]);
        }
        // Each chunk arrived no earlier than the line in it was due.
        for (at, chunk) in &chunks {
            let due: Timestamp = chunk.split_once(' ').unwrap().0.parse().unwrap();
            assert!(*at >= due, "{chunk} arrived at {at}");
        }
    }

    #[tokio::test]
    async fn a_stopped_container_writes_only_the_lines_due_before_its_end() {
        let s = script(9, 1000);
        let started = Timestamp::now() - SignedDuration::from_millis(2500);
        let end = End {
            at: Timestamp::now(),
            exit_code: 143,
        };
        let (_tx, rx) = watch::channel(Container::Terminated { started, end });
        // follow=true on an ended container: what was written, then the end.
        let q = query(&[("follow", "true"), ("limitBytes", "1000")]).unwrap();
        let text: Vec<u8> = stream(s.clone(), rx.clone(), q)
            .flat_map(|c| futures::stream::iter(c.unwrap().to_vec()))
            .collect()
            .await;
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n"
        );
        // limitBytes cuts, even inside a line.
        let q = query(&[("limitBytes", "10")]).unwrap();
        let text: Vec<u8> = stream(s, rx, q)
            .flat_map(|c| futures::stream::iter(c.unwrap().to_vec()))
            .collect()
            .await;
        assert_eq!(String::from_utf8(text).unwrap(), "{\"n\":0}\n{\"");
    }
}
