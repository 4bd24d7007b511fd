//! An incremental `text/event-stream` parser for streamed replies.

/// Incremental `text/event-stream` parser: yields the `data` of each event.
#[derive(Default)]
pub(super) struct SseParser {
    buf: Vec<u8>,
    event: SseEvent,
}

#[derive(Default)]
struct SseEvent {
    data: String,
    has_data: bool,
}

impl SseEvent {
    fn line(&mut self, line: &[u8], out: &mut Vec<String>) {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.data));
            }
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(&String::from_utf8_lossy(value));
            self.has_data = true;
        }
        // id:, event:, retry: are not needed here.
    }
}

impl SseParser {
    pub(super) fn push(&mut self, bytes: &[u8], out: &mut Vec<String>) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(rel) = self.buf[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            let end = start + rel;
            let term = if self.buf[end] == b'\r' {
                match self.buf.get(end + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => break, // a CR at the end: wait to see if LF follows
                }
            } else {
                1
            };
            self.event.line(&self.buf[start..end], out);
            start = end + term;
        }
        self.buf.drain(..start);
    }

    /// End of stream: take a last unterminated line and a last undelimited event.
    pub(super) fn finish(&mut self, out: &mut Vec<String>) {
        let rest = std::mem::take(&mut self.buf);
        let rest = rest.strip_suffix(b"\r").unwrap_or(&rest);
        if !rest.is_empty() {
            self.event.line(rest, out);
        }
        self.event.line(b"", out);
    }
}
