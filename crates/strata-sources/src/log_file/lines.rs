//! Complete lines of a file from a byte position on, with a bounded buffer:
//! a line still being written waits for its newline, and a line longer than
//! the limit is cut to its first bytes and the rest skipped.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const READ_CHUNK: usize = 1 << 20;

/// One line, and the byte position just past its newline.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Complete {
        text: Vec<u8>,
        end: u64,
    },
    /// Longer than the limit: its first `limit` bytes.
    TooLong {
        prefix: Vec<u8>,
        end: u64,
    },
}

impl Line {
    /// Whitespace only: such a line is no message and lands no record.
    pub fn is_blank(&self) -> bool {
        matches!(self, Line::Complete { text, .. } if text.iter().all(u8::is_ascii_whitespace))
    }
}

pub struct LineReader {
    file: File,
    /// Start of the first line not yet returned.
    pos: u64,
    /// Bytes read from `pos` on (at most `limit + 1` while skipping).
    buffer: Vec<u8>,
    /// The file offset the next read starts at.
    read_to: u64,
    /// Set while the rest of an overlong line is skipped: its prefix.
    skipping: Option<Vec<u8>>,
    /// Where the skipped line ended, once its newline is found.
    pending_end: Option<u64>,
    limit: usize,
}

impl LineReader {
    pub fn new(file: File, pos: u64, limit: usize) -> Self {
        Self {
            file,
            pos,
            buffer: Vec::new(),
            read_to: pos,
            skipping: None,
            pending_end: None,
            limit,
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Start of the first line not yet returned.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next complete line, reading more of the file as needed; `None`
    /// at the end of what the file holds now.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Some(line));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// After [`Self::next_line`] found the end: the bytes after the last
    /// newline, as a line. Only for a file that gets no more bytes (rotated
    /// away), whose unterminated end is therefore whole.
    pub fn take_rest(&mut self) -> Option<Line> {
        let end = self.read_to;
        if let Some(prefix) = self.skipping.take() {
            self.pos = end;
            return Some(Line::TooLong { prefix, end });
        }
        if self.buffer.is_empty() {
            return None;
        }
        let text = std::mem::take(&mut self.buffer);
        self.pos = end;
        Some(Line::Complete { text, end })
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = vec![0u8; READ_CHUNK];
        let n = self.file.read_at(&mut chunk, self.read_to)?;
        chunk.truncate(n);
        self.read_to += n as u64;
        if self.skipping.is_some() {
            if let Some(at) = chunk.iter().position(|b| *b == b'\n') {
                // The overlong line ends here; keep what follows it.
                self.pending_end = Some(self.read_to - (n - at - 1) as u64);
                self.buffer = chunk[at + 1..].to_vec();
            }
        } else {
            self.buffer.extend_from_slice(&chunk);
        }
        Ok(n)
    }

    fn take_line(&mut self) -> Option<Line> {
        if let Some(end) = self.pending_end.take() {
            let prefix = self.skipping.take().unwrap_or_default();
            self.pos = end;
            return Some(Line::TooLong { prefix, end });
        }
        if self.skipping.is_some() {
            return None;
        }
        match self.buffer.iter().position(|b| *b == b'\n') {
            Some(at) if at > self.limit => Some(self.cut(at)),
            Some(at) => {
                let mut text: Vec<u8> = self.buffer.drain(..=at).collect();
                text.pop();
                if text.last() == Some(&b'\r') {
                    text.pop();
                }
                self.pos += at as u64 + 1;
                Some(Line::Complete {
                    text,
                    end: self.pos,
                })
            }
            None if self.buffer.len() > self.limit => {
                self.skipping = Some(self.buffer[..self.limit].to_vec());
                self.buffer.clear();
                None
            }
            None => None,
        }
    }

    /// An overlong line whose newline is in the buffer at `at`.
    fn cut(&mut self, at: usize) -> Line {
        let prefix = self.buffer[..self.limit].to_vec();
        self.buffer.drain(..=at);
        self.pos += at as u64 + 1;
        Line::TooLong {
            prefix,
            end: self.pos,
        }
    }
}
