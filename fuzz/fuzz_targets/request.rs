//! Request lines from the host: any bytes, framed as serve frames its stdin and parsed as serve parses a line.
//! Nothing panics; every frame is accounted for; a bad line gets an error with a known code and words; the id an
//! error names is the line's own top-level id whenever serde_json reads the line.
#![no_main]

use claude_k8s::serve::framing::{Frame, HEAD_BYTES, RequestLines};
use claude_k8s::serve::parse;
use claude_k8s::serve::protocol::{self, Message};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

/// A small limit, so that over-long lines are common.
const MAX: usize = 512;

fuzz_target!(|data: &[u8]| {
    check_line(data);
    // The same bytes as a stream, in reads of a size the input picks.
    let read = 1 + data.first().map_or(0, |b| *b as usize % 97);
    let mut codec = RequestLines::new(MAX);
    let mut buf = BytesMut::new();
    let mut seen = 0;
    for chunk in data.chunks(read) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            seen += frame_bytes(frame);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
        seen += frame_bytes(frame);
    }
    // Every byte is in exactly one frame; each frame had its newline but a last one without.
    let unterminated = !data.is_empty() && !data.ends_with(b"\n");
    assert_eq!(seen, data.len() + usize::from(unterminated));
});

/// A frame's bytes and its newline.
fn frame_bytes(frame: Frame) -> usize {
    match frame {
        Frame::Line(line) => {
            assert!(line.len() <= MAX);
            check_line(&line);
            line.len() + 1
        }
        Frame::TooLong { head, len } => {
            assert!(len > MAX && head.len() <= HEAD_BYTES.min(len));
            let _ = protocol::salvage(&head);
            len + 1
        }
    }
}

fn check_line(line: &[u8]) {
    let salvaged = protocol::salvage(line);
    let _ = protocol::lone_surrogate(line);
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(line) {
        let field = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
        assert_eq!(
            salvaged.id,
            field("id"),
            "the salvaged id is the line's own"
        );
        assert_eq!(salvaged.kind, field("type"));
    }
    match parse(line) {
        Ok(_) => assert!(std::str::from_utf8(line).is_ok()),
        Err(Message::Error { id, code, message }) => {
            assert!(
                ["bad_request", "unknown_request"].contains(&code.as_str()),
                "{code}"
            );
            assert!(!message.is_empty());
            if salvaged.kind.as_deref() == Some("cancel") {
                assert_eq!(id, None, "a cancel's error never names the execute");
            } else {
                assert_eq!(id, salvaged.id);
            }
            // The answer is a line the shim can read.
            let answer = Message::Error { id, code, message };
            let encoded = serde_json::to_vec(&answer).unwrap();
            assert!(!encoded.contains(&b'\n'));
            serde_json::from_slice::<Value>(&encoded).unwrap();
        }
        Err(other) => panic!("not an error: {other:?}"),
    }
}
