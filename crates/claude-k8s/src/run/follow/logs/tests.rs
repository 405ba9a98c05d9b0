use jiff::Timestamp;

use super::assemble::PARTIAL_LINE;
use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn splits_kubelet_timestamps() {
    let (t, text) = split_timestamp(b"2026-11-25T07:00:00.123456789Z {\"a\": 1} x\n").unwrap();
    assert_eq!(t, ts("2026-11-25T07:00:00.123456789Z"));
    assert_eq!(text, "{\"a\": 1} x");
    assert_eq!(split_timestamp(b"2026-11-25T07:00:01Z\n").unwrap().1, "");
    assert!(split_timestamp(b"garbage line").is_none());
    // Multi-byte characters survive; invalid bytes become U+FFFD instead of an error.
    let (_, text) =
        split_timestamp("2026-11-25T07:00:01Z h\u{e9}llo \u{1f980}\r\n".as_bytes()).unwrap();
    assert_eq!(text, "h\u{e9}llo \u{1f980}");
    let (_, text) = split_timestamp(b"2026-11-25T07:00:01Z a\xffb\n").unwrap();
    assert_eq!(text, "a\u{fffd}b");
}

#[test]
fn long_lines_cut_by_the_runtime_are_joined_at_16_kib_boundaries_only() {
    // "é" then x's then "🦀": the runtime's cuts fall at 16 KiB, one of them inside a multi-byte character.
    let mut original = "é".as_bytes().to_vec();
    original.extend(std::iter::repeat_n(b'x', PARTIAL_LINE * 2 - 3));
    original.extend("🦀 2026-11-25T07:00:09Z not a cut".as_bytes());
    let mut wire = b"2026-11-25T07:00:01.000000001Z ".to_vec();
    for (i, piece) in original.chunks(PARTIAL_LINE).enumerate() {
        if i > 0 {
            wire.extend(format!("2026-11-25T07:00:01.00000000{}Z ", i + 1).as_bytes());
        }
        wire.extend(piece);
    }
    wire.push(b'\n');
    let (ts, text) = split_timestamp(&wire).unwrap();
    assert_eq!(
        ts,
        "2026-11-25T07:00:01.000000001Z"
            .parse::<Timestamp>()
            .unwrap()
    );
    assert_eq!(
        text.as_bytes(),
        original.as_slice(),
        "joined exactly, the agent's own timestamp kept"
    );
    // A line of exactly one piece, or shorter, is left alone.
    let short = format!("2026-11-25T07:00:01Z {}\n", "y".repeat(PARTIAL_LINE));
    assert_eq!(
        split_timestamp(short.as_bytes()).unwrap().1.len(),
        PARTIAL_LINE
    );
}

#[test]
fn a_reopened_stream_drops_the_overlap_exactly() {
    let mut c = Cursor::default();
    let mut n = 0;
    // First stream: three lines, two sharing a timestamp.
    assert!(c.admit(ts("2026-01-01T00:00:01.1Z"), &mut n));
    assert!(c.admit(ts("2026-01-01T00:00:01.5Z"), &mut n));
    assert!(c.admit(ts("2026-01-01T00:00:01.5Z"), &mut n));
    // Reopened from the whole second: everything up to the cursor is replayed, then one new line at the same
    // instant and a later one.
    let mut n = 0;
    assert!(!c.admit(ts("2026-01-01T00:00:01.1Z"), &mut n));
    assert!(!c.admit(ts("2026-01-01T00:00:01.5Z"), &mut n));
    assert!(!c.admit(ts("2026-01-01T00:00:01.5Z"), &mut n));
    assert!(c.admit(ts("2026-01-01T00:00:01.5Z"), &mut n));
    assert!(c.admit(ts("2026-01-01T00:00:02Z"), &mut n));
    assert!(!c.admit(ts("2026-01-01T00:00:01.9Z"), &mut n));
    assert_eq!(c.since(), Some(ts("2026-01-01T00:00:02Z")));
    let mut c = Cursor::default();
    c.admit(ts("2026-01-01T00:00:01.7Z"), &mut n);
    assert_eq!(
        c.since(),
        Some(ts("2026-01-01T00:00:01Z")),
        "rounded down, never up"
    );
}

/// `text` as the kubelet sends it: cut into 16 KiB pieces, each after its own timestamp, then a newline.
fn on_the_wire(text: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (i, piece) in text.chunks(PARTIAL_LINE).enumerate() {
        wire.extend(format!("2026-11-25T07:00:01.{:09}Z ", i + 1).as_bytes());
        wire.extend(piece);
    }
    if text.is_empty() {
        wire.extend(b"2026-11-25T07:00:01.000000001Z ");
    }
    wire.push(b'\n');
    wire
}

/// Feeds `wire` in chunks of `chunk` bytes: the lines that came out.
fn assemble(max: usize, wire: &[u8], chunk: usize) -> Vec<Assembled> {
    let mut assembler = Assembler::new(max);
    let mut out = Vec::new();
    for mut piece in wire.chunks(chunk) {
        while !piece.is_empty() {
            let (taken, done) = assembler.feed(piece);
            assert!(taken > 0 && taken <= piece.len());
            assert!(
                assembler.text.len() <= max + 1,
                "never more than the limit held"
            );
            piece = &piece[taken..];
            out.extend(done);
        }
    }
    out
}

fn text_of(line: &Assembled) -> &str {
    match line {
        Assembled::Line(l) => &l.text,
        Assembled::Unstamped => panic!("no timestamp"),
    }
}

#[test]
fn a_line_is_assembled_the_same_whatever_chunks_the_stream_brings() {
    let mut original = "é".as_bytes().to_vec();
    original.extend(std::iter::repeat_n(b'x', PARTIAL_LINE * 3 - 1));
    original.extend("🦀 2026-11-25T07:00:09Z own stamp\r".as_bytes());
    let mut wire = on_the_wire(&original);
    wire.extend(b"2026-11-25T07:00:02Z next\r\nno stamp here\n2026-11-25T07:00:03Z\n");
    let whole = assemble(usize::MAX - 1, &wire, wire.len());
    let expected = String::from_utf8(original[..original.len() - 1].to_vec()).unwrap();
    assert_eq!(whole.len(), 4);
    assert_eq!(
        text_of(&whole[0]),
        expected,
        "the \r before the newline is not text"
    );
    assert_eq!(text_of(&whole[1]), "next");
    assert_eq!(whole[2], Assembled::Unstamped);
    assert_eq!(text_of(&whole[3]), "");
    for chunk in [1, 2, 7, 39, 40, 41, 1000, PARTIAL_LINE, PARTIAL_LINE + 31] {
        assert_eq!(
            assemble(usize::MAX - 1, &wire, chunk),
            whole,
            "chunks of {chunk}"
        );
    }
}

#[test]
fn a_line_over_the_limit_is_cut_at_a_character_boundary_behind_the_marker() {
    const MAX: usize = 100_000;
    // 70 MiB would take a while in a unit test; 3 MiB of two-byte characters is the same case.
    let original = "é".repeat(3 * 512 * 1024);
    let mut wire = on_the_wire(original.as_bytes());
    wire.extend(b"2026-11-25T07:00:02Z the next line\n");
    let lines = assemble(MAX, &wire, 4096);
    assert_eq!(lines.len(), 2);
    let cut = text_of(&lines[0]);
    let marker = cut_marker(original.len(), MAX);
    assert!(cut.starts_with(&format!("{marker} é")), "{}", &cut[..200]);
    let kept = &cut[marker.len() + 1..];
    assert_eq!(
        kept.len(),
        MAX,
        "cut exactly at the limit (a boundary: MAX is even)"
    );
    assert!(kept.chars().all(|c| c == 'é'), "no partial character");
    assert_eq!(
        text_of(&lines[1]),
        "the next line",
        "the line after is whole"
    );
    // A limit inside a character: cut before it.
    let lines = assemble(MAX + 1, &wire, 4096);
    let cut = text_of(&lines[0]);
    let marker = cut_marker(original.len(), MAX);
    assert!(cut.starts_with(&marker), "{}", &cut[..200]);
    assert_eq!(cut.len() - marker.len() - 1, MAX);
    // At the limit exactly: whole, no marker.
    let exact = "a".repeat(MAX);
    let lines = assemble(MAX, &on_the_wire(exact.as_bytes()), 999);
    assert_eq!(text_of(&lines[0]), exact);
    assert!(cut_marker(73_400_320, 4_194_304).starts_with(
        "[claude-k8s] line cut: claude wrote a line of 73400320 bytes; its first 4194304 follow"
    ));
}

#[test]
fn a_final_line_without_newline_is_finished_at_the_end_of_the_log() {
    let mut assembler = Assembler::new(1024);
    let (taken, done) = assembler.feed(b"2026-11-25T07:00:01Z tail");
    assert_eq!((taken, done), (25, None));
    assert!(assembler.in_line());
    assert_eq!(text_of(&assembler.finish()), "tail");
    assert!(!assembler.in_line());
}

#[tokio::test]
async fn the_line_channel_holds_about_two_lines_and_frees_room_as_lines_are_taken() {
    let (outbox, _written) = crate::serve::outbox::outbox(1 << 30);
    let (tx, mut rx) = channel(MAX_LINE, outbox);
    const MAX_LINE: usize = 64 * 1024;
    let line = "x".repeat(MAX_LINE);
    tx.send(line.clone()).await.unwrap();
    tx.send(line.clone()).await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(100), tx.send(line.clone())).await;
    assert!(third.is_err(), "a third whole line waits for room");
    assert_eq!(rx.recv().await.unwrap(), line);
    tokio::time::timeout(Duration::from_secs(5), tx.send(line.clone()))
        .await
        .expect("room again")
        .unwrap();
    drop(tx);
    assert_eq!(rx.recv().await.unwrap(), line);
    assert_eq!(rx.recv().await.unwrap(), line);
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn the_shells_exit_line_is_an_event_for_the_run_and_skipped_for_a_reader_of_lines() {
    assert_eq!(exit_line_code("[claude-k8s] claude exited: 0"), Some(0));
    assert_eq!(exit_line_code("[claude-k8s] claude exited: 137"), Some(137));
    for not in [
        "[claude-k8s] claude exited: ",
        "[claude-k8s] claude exited: 0 ",
        "[claude-k8s] claude exited: -1",
        "[claude-k8s] claude exited: 1234",
        " [claude-k8s] claude exited: 0",
        "{\"type\":\"result\"} [claude-k8s] claude exited: 0",
    ] {
        assert_eq!(exit_line_code(not), None, "{not}");
    }
    let (outbox, _written) = crate::serve::outbox::outbox(1 << 20);
    let (tx, mut events) = channel(1024, outbox.clone());
    for line in ["a", "[claude-k8s] claude exited: 3"] {
        tx.send(line.into()).await.unwrap();
    }
    tx.probe_ended().unwrap();
    drop(tx);
    assert_eq!(events.recv_event().await, Some(LogEvent::Line("a".into())));
    assert_eq!(events.recv_event().await, Some(LogEvent::Exit(3)));
    assert_eq!(events.recv_event().await, Some(LogEvent::ProbeEnded));
    assert_eq!(events.recv_event().await, None);
    let (tx, mut lines) = channel(1024, outbox);
    for line in ["a", "[claude-k8s] claude exited: 0", "b"] {
        tx.send(line.into()).await.unwrap();
    }
    tx.probe_ended().unwrap();
    drop(tx);
    assert_eq!(lines.recv().await.as_deref(), Some("a"));
    assert_eq!(lines.recv().await.as_deref(), Some("b"));
    assert_eq!(lines.recv().await, None);
}

#[test]
fn the_reopen_backoff_doubles_from_200_ms_to_5_s() {
    let delays: Vec<u64> = reopen_backoff()
        .take(7)
        .map(|d| d.as_millis() as u64)
        .collect();
    assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000]);
}
