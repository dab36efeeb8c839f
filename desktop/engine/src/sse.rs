//! A small Server-Sent Events parser: `event:` and `data:` lines, `id:` and unknown fields
//! ignored, `:` comments ignored, dispatch on a blank line. Lines end with LF or CRLF.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes and returns the events completed by them. Bytes are kept until a whole line
    /// is there, so multi-byte characters split across chunks decode correctly.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            self.line(&line, &mut out);
        }
        self.buf.drain(..start);
        out
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                let event = std::mem::take(&mut self.event);
                out.push(SseEvent {
                    event: if event.is_empty() {
                        "message".to_owned()
                    } else {
                        event
                    },
                    data,
                });
            }
            self.event.clear();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_across_chunks_and_ignores_comments_and_ids() {
        let mut p = SseParser::default();
        let mut got = p.feed(b": keep-alive\n\nevent: conn");
        assert!(got.is_empty());
        got.extend(p.feed(b"ected\r\ndata: {\"a\":1}\r\n\r\nevent: webhook\nid: msg_1\ndata:x\n"));
        got.extend(p.feed("data: \u{e9}".as_bytes()));
        got.extend(p.feed(b"\n\n"));
        assert_eq!(
            got,
            vec![
                SseEvent {
                    event: "connected".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: "webhook".into(),
                    data: "x\n\u{e9}".into()
                },
            ]
        );
    }
}
