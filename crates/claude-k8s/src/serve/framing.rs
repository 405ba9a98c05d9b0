//! The request lines on serve's stdin, as bytes: a line that is not UTF-8 is one bad request, not the end of the
//! stream, and a line over the limit is skipped in time linear in its length, keeping only its head (from which
//! the error's id is read).

use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// How much of an over-long line is kept to read its `type` and `id` from (the shim writes them first).
pub const HEAD_BYTES: usize = 64 * 1024;

/// One line of the host's.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A line, without its `\n`.
    Line(Vec<u8>),
    /// A line over the limit: its first [`HEAD_BYTES`] and its whole length.
    TooLong { head: Vec<u8>, len: usize },
}

/// Splits stdin into [`Frame`]s of at most `max` bytes each.
#[derive(Debug)]
pub struct RequestLines {
    max: usize,
    /// Where the search for the next `\n` resumes (the bytes before it have none).
    searched: usize,
    /// The line being skipped: its head and how long it is so far.
    skipping: Option<(Vec<u8>, usize)>,
}

impl RequestLines {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            searched: 0,
            skipping: None,
        }
    }
}

impl Decoder for RequestLines {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some((_, len)) = &mut self.skipping {
            let Some(end) = buf.iter().position(|b| *b == b'\n') else {
                *len += buf.len();
                buf.clear();
                return Ok(None);
            };
            *len += end;
            buf.advance(end + 1);
            return Ok(self
                .skipping
                .take()
                .map(|(head, len)| Frame::TooLong { head, len }));
        }
        let window = buf.len().min(self.max + 1);
        match buf[self.searched..window].iter().position(|b| *b == b'\n') {
            Some(at) => {
                let end = self.searched + at;
                self.searched = 0;
                let mut line = buf.split_to(end + 1);
                line.truncate(end);
                Ok(Some(Frame::Line(line.to_vec())))
            }
            None if buf.len() > self.max => {
                // Over the limit: the line is skipped from here to its end (which may be in `buf` already).
                self.searched = 0;
                // The head is the line's own: with a limit below HEAD_BYTES, `buf` may hold the next lines already.
                self.skipping = Some((buf[..HEAD_BYTES.min(window)].to_vec(), window));
                buf.advance(window);
                self.decode(buf)
            }
            None => {
                self.searched = buf.len();
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        // The last line, without its `\n`.
        if let Some((head, len)) = self.skipping.take() {
            return Ok(Some(Frame::TooLong { head, len }));
        }
        self.searched = 0;
        Ok((!buf.is_empty()).then(|| Frame::Line(buf.split().to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_of_a_long_line_is_its_own_whatever_the_limit() {
        let got = frames(4, &[b"0123456789\nok\n"]);
        match &got[0] {
            Frame::TooLong { head, len } => {
                assert_eq!(*len, 10);
                assert_eq!(head, b"01234", "the head stops within the line");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[1], Frame::Line(b"ok".to_vec()));
    }

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut codec = RequestLines::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                out.push(frame);
            }
        }
        while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
            out.push(frame);
        }
        out
    }

    #[test]
    fn lines_of_any_bytes_split_at_newlines() {
        assert_eq!(
            frames(16, &[b"ab\n\xff\xfe", b"c\n", b"\nlast"]),
            vec![
                Frame::Line(b"ab".to_vec()),
                Frame::Line(b"\xff\xfec".to_vec()),
                Frame::Line(Vec::new()),
                Frame::Line(b"last".to_vec()),
            ]
        );
        assert_eq!(
            frames(4, &[b"abcd\n"]),
            vec![Frame::Line(b"abcd".to_vec())],
            "a line of exactly the limit is whole"
        );
    }

    #[test]
    fn an_over_long_line_is_skipped_keeping_its_head_and_the_next_line_is_whole() {
        let long = vec![b'x'; 3 * HEAD_BYTES];
        let chunks: Vec<&[u8]> = long.chunks(1000).chain([&b"yz\nnext\n"[..]]).collect();
        let got = frames(HEAD_BYTES, &chunks);
        assert_eq!(got.len(), 2);
        match &got[0] {
            Frame::TooLong { head, len } => {
                assert_eq!(head.len(), HEAD_BYTES);
                assert_eq!(*len, 3 * HEAD_BYTES + 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[1], Frame::Line(b"next".to_vec()));
        // Over the limit at the end of the input, without a newline.
        let got = frames(4, &[b"abcdefg"]);
        assert!(
            matches!(&got[..], [Frame::TooLong { len: 7, .. }]),
            "{got:?}"
        );
    }
}
