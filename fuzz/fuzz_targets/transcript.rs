//! What an agent prints, as untrusted as it is (its Bash tool can write anything to the container's stdout): the
//! bytes of a log stream as the kubelet sends them, assembled into lines with a small limit, in reads of any size
//! (the same lines as in one read); every line bounded; the transcript they make and the result of every way a
//! run can end, encoded as the wire has it.
#![no_main]

use claude_k8s::run::follow::Ending;
use claude_k8s::run::follow::logs::{Assembled, Assembler, cut_marker};
use claude_k8s::run::follow::stream_json::Transcript;
use claude_k8s::run::outcome::{ContainerEnd, ErrorCode, Failure, RunFacts, report};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 256;

fn lines(data: &[u8], read: usize) -> Vec<Assembled> {
    let mut assembler = Assembler::new(MAX);
    let mut out = Vec::new();
    for mut chunk in data.chunks(read) {
        while !chunk.is_empty() {
            let (taken, done) = assembler.feed(chunk);
            assert!(taken > 0 && taken <= chunk.len());
            chunk = &chunk[taken..];
            out.extend(done);
        }
    }
    if assembler.in_line() {
        out.push(assembler.finish());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let read = 1 + data.first().map_or(0, |b| *b as usize % 61);
    let assembled = lines(data, read);
    assert_eq!(
        assembled,
        lines(data, data.len().max(1)),
        "reads of {read} bytes"
    );
    let mut transcript = Transcript::default();
    let longest = MAX * 3 + cut_marker(usize::MAX, MAX).len() + 1;
    for line in &assembled {
        if let Assembled::Line(line) = line {
            // Bytes that are not UTF-8 may each become a U+FFFD of three.
            assert!(line.text.len() <= longest, "{} bytes", line.text.len());
            transcript.push_line(&line.text);
        }
    }
    let facts = RunFacts {
        cwd: "/w".into(),
        now: jiff::Timestamp::UNIX_EPOCH.to_zoned(jiff::tz::TimeZone::UTC),
        ..RunFacts::default()
    };
    let exit_code = data.last().map_or(0, |b| i32::from(*b) - 128);
    let endings = [
        Ending::Exited(ContainerEnd {
            exit_code,
            ..ContainerEnd::default()
        }),
        Ending::StoppedAfterResult(None),
        Ending::TimedOut,
        Ending::Cancelled,
        Ending::Failed(Failure::new(
            ErrorCode::PodFailed,
            "failed".into(),
            Some("hint"),
        )),
    ];
    for ending in &endings {
        let result = report(
            ending,
            &transcript,
            &facts,
            false,
            10,
            60,
            jiff::Timestamp::UNIX_EPOCH,
        );
        serde_json::to_vec(&result).unwrap();
    }
});
