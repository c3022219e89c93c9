//! Where a chunked body ends (RFC 9112 §7.1), found while its bytes are
//! relayed as they are: chunk sizes, extensions, data, trailer fields and
//! the final blank line. Nothing is copied; the scan says how many of the
//! bytes it is shown belong to the body, and where their chunk data lies
//! (for HTTP/2 clients, which get the body decoded).
//!
//! Strict where framing is at stake: a size is 1 to 16 hex digits, a line
//! ends in CRLF (or a bare LF, as `httparse` reads heads), chunk data is
//! followed by its line end, and a line (size, extension or trailer) is at
//! most [`MAX_LINE`] bytes.

/// The longest size, extension or trailer line.
pub(crate) const MAX_LINE: usize = 4096;

/// The most hex digits in a chunk size (a `u64`).
const MAX_SIZE_DIGITS: u8 = 16;

/// Why a chunked body cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a size.
    Size { size: u64, digits: u8 },
    /// After the size: an extension (or whitespace) until the line end.
    Extension { size: u64 },
    /// A CR was read after a size line: LF must follow.
    SizeLf { size: u64 },
    /// Chunk data still to come.
    Data { left: u64 },
    /// After chunk data: CR or LF.
    DataEnd,
    /// After chunk data and its CR: LF.
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// A CR was read on a trailer line: LF must follow.
    TrailerLf,
    /// A CR was read on the final blank line: LF must follow.
    LastLf,
    /// The body is complete.
    Done,
}

/// The scan of one chunked body.
#[derive(Debug, Clone)]
pub(crate) struct Chunked {
    state: State,
    /// Bytes on the current line (size, extension or trailer).
    line: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Self {
            state: State::Size { size: 0, digits: 0 },
            line: 0,
        }
    }
}

impl Chunked {
    /// Whether the body is complete.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scan the next bytes: how many of them belong to the body (all of
    /// them, unless the body ends inside `bytes`), each piece of chunk data
    /// among them (the body decoded) handed to `data` as it is passed.
    pub(crate) fn scan_each(
        &mut self,
        bytes: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            if let State::Data { left } = self.state {
                // Skip the data in one step.
                let rest = bytes.len().saturating_sub(i);
                let take = usize::try_from(left).map_or(rest, |l| l.min(rest));
                data(bytes.get(i..i.saturating_add(take)).unwrap_or(&[]));
                i = i.saturating_add(take);
                let left = left.saturating_sub(take as u64);
                self.state = if left == 0 {
                    State::DataEnd
                } else {
                    State::Data { left }
                };
                continue;
            }
            if self.state == State::Done {
                return Ok(i);
            }
            let b = bytes[i];
            i = i.saturating_add(1);
            self.step(b)?;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), Malformed> {
        let on_line = matches!(
            self.state,
            State::Size { .. } | State::Extension { .. } | State::Trailer | State::TrailerStart
        );
        if on_line {
            self.line = self.line.saturating_add(1);
            if self.line > MAX_LINE {
                return Err(Malformed("a chunk line is too long"));
            }
        }
        self.state = match self.state {
            State::Size { size, digits } => match (hex(b), b) {
                (Some(d), _) => {
                    if digits >= MAX_SIZE_DIGITS {
                        return Err(Malformed("a chunk size is too large"));
                    }
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(d)))
                        .ok_or(Malformed("a chunk size is too large"))?;
                    State::Size {
                        size,
                        digits: digits.saturating_add(1),
                    }
                }
                _ if digits == 0 => return Err(Malformed("a chunk size has no digits")),
                (None, b';' | b' ' | b'\t') => State::Extension { size },
                (None, b'\r') => State::SizeLf { size },
                (None, b'\n') => self.after_size(size),
                (None, _) => return Err(Malformed("a chunk size is not hex")),
            },
            State::Extension { size } => match b {
                b'\r' => State::SizeLf { size },
                b'\n' => self.after_size(size),
                // Control bytes other than tab have no place in an extension.
                0..=8 | 10..=31 | 127 => {
                    return Err(Malformed("a control byte in a chunk extension"))
                }
                _ => State::Extension { size },
            },
            State::SizeLf { size } => match b {
                b'\n' => self.after_size(size),
                _ => return Err(Malformed("a chunk size line without its LF")),
            },
            State::DataEnd => match b {
                b'\r' => State::DataLf,
                b'\n' => self.next_line(State::Size { size: 0, digits: 0 }),
                _ => return Err(Malformed("chunk data longer than its size")),
            },
            State::DataLf => match b {
                b'\n' => self.next_line(State::Size { size: 0, digits: 0 }),
                _ => return Err(Malformed("chunk data without its CRLF")),
            },
            State::TrailerStart => match b {
                b'\r' => State::LastLf,
                b'\n' => State::Done,
                _ => State::Trailer,
            },
            State::Trailer => match b {
                b'\r' => State::TrailerLf,
                b'\n' => self.next_line(State::TrailerStart),
                0..=8 | 11..=31 | 127 => return Err(Malformed("a control byte in a trailer")),
                _ => State::Trailer,
            },
            State::TrailerLf => match b {
                b'\n' => self.next_line(State::TrailerStart),
                _ => return Err(Malformed("a trailer line without its LF")),
            },
            State::LastLf => match b {
                b'\n' => State::Done,
                _ => return Err(Malformed("the last chunk without its blank line")),
            },
            // Taken care of by `scan_each`.
            State::Data { .. } | State::Done => self.state,
        };
        Ok(())
    }

    fn after_size(&mut self, size: u64) -> State {
        if size == 0 {
            self.next_line(State::TrailerStart)
        } else {
            self.line = 0;
            State::Data { left: size }
        }
    }

    fn next_line(&mut self, state: State) -> State {
        self.line = 0;
        state
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
