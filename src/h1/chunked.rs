//! A strict, incremental decoder of the chunked transfer coding (RFC 9112 §7.1), and
//! its encoder.
//!
//! The decoder is fed whatever bytes have arrived and hands back the data it found, as
//! ranges of the input (no copy). It is strict where a lenient reader and a strict one
//! could split a body differently: the size is `1*HEXDIG` with an overflow check
//! (CVE-2021-32714), every line ends in CRLF (a bare CR or LF is an error, also inside
//! an extension, where httparse's `parse_chunk_size` would pass one), data is followed
//! by exactly CRLF, extensions hold no control characters but HTAB and their total size
//! per message is bounded (`limits.max_chunk_extension`, like hyper's 16 KiB after
//! hyper#3495), and trailer lines are bounded and well-formed. Extensions and trailer
//! fields are checked and dropped: the encoder writes plain chunks.

use std::ops::Range;

/// Why a chunked body is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A size that is not `1*HEXDIG`, or overflows 64 bits.
    Size,
    /// A line not ended by CRLF, or a control character where none may be.
    Syntax,
    /// Extensions or trailers larger than their limit.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` read so far.
    Size { digits: u8 },
    /// After the size, before `;` or CR: only spaces and tabs (BWS).
    SizeWs,
    /// Inside the extensions; `quoted` while in a quoted string, `escape` after `\`.
    Ext { quoted: bool, escape: bool },
    /// Saw the CR ending the size line.
    SizeLf,
    /// Chunk data left to read.
    Data,
    /// Data read; expecting CR.
    DataCr,
    /// Expecting the LF after the data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Saw the CR ending a trailer line.
    TrailerLf,
    /// Saw the CR of the final empty line.
    EndLf,
    /// The last chunk and the trailer section are read.
    Done,
}

/// What one call to [`Decoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input consumed (framing and data).
    pub consumed: usize,
    /// Chunk data inside the consumed bytes, if any.
    pub data: Option<Range<usize>>,
    /// The body has ended (the last chunk and trailers are read).
    pub done: bool,
}

/// An incremental chunked decoder; see the module doc.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    size: u64,
    remaining: u64,
    ext_used: usize,
    ext_limit: usize,
    trailer_used: usize,
    trailer_limit: usize,
    /// Whether the current trailer line has its colon yet.
    colon: bool,
    line_len: usize,
}

impl Decoder {
    /// A decoder whose extensions may total `ext_limit` bytes and trailer section
    /// `trailer_limit` bytes.
    pub fn new(ext_limit: usize, trailer_limit: usize) -> Self {
        Decoder {
            state: State::Size { digits: 0 },
            size: 0,
            remaining: 0,
            ext_used: 0,
            ext_limit,
            trailer_used: 0,
            trailer_limit,
            colon: false,
            line_len: 0,
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Chunk data still expected in the current chunk (0 between chunks).
    pub fn remaining_in_chunk(&self) -> u64 {
        if self.state == State::Data {
            self.remaining
        } else {
            0
        }
    }

    /// Consumes framing from `input` up to the next data (returned as a range of
    /// `input`), the end of `input`, or the end of the body.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Data => {
                    let n = (input.len() - i)
                        .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Decoded {
                        consumed: i + n,
                        data: Some(i..i + n),
                        done: false,
                    });
                }
                State::Size { digits } => {
                    if let Some(d) = hex(b) {
                        // Leading zeros are fine, but not without end.
                        if digits >= 64 {
                            return Err(ChunkError::Size);
                        }
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or(ChunkError::Size)?;
                        self.state = State::Size {
                            digits: digits.saturating_add(1),
                        };
                    } else if digits == 0 {
                        return Err(ChunkError::Size);
                    } else {
                        self.state = State::SizeWs;
                        continue;
                    }
                }
                State::SizeWs => match b {
                    b' ' | b'\t' => self.ext(1)?,
                    b';' => {
                        self.ext(1)?;
                        self.state = State::Ext {
                            quoted: false,
                            escape: false,
                        };
                    }
                    b'\r' => self.state = State::SizeLf,
                    _ => return Err(ChunkError::Size),
                },
                State::Ext { quoted, escape } => {
                    self.ext(1)?;
                    if b == b'\r' && !quoted {
                        self.state = State::SizeLf;
                    } else if (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(ChunkError::Syntax);
                    } else if quoted {
                        self.state = State::Ext {
                            quoted: b != b'"' || escape,
                            escape: !escape && b == b'\\',
                        };
                    } else {
                        self.state = State::Ext {
                            quoted: b == b'"',
                            escape: false,
                        };
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Syntax);
                    }
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.remaining = self.size;
                        self.state = State::Data;
                    }
                    self.size = 0;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::Syntax);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Syntax);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::EndLf;
                    } else if is_token(b) {
                        self.trailer(1)?;
                        self.colon = false;
                        self.line_len = 1;
                        self.state = State::Trailer;
                    } else {
                        // A field line starts with a name: not a space (obs-fold),
                        // not a colon (an empty name).
                        return Err(ChunkError::Syntax);
                    }
                }
                State::Trailer => {
                    self.trailer(1)?;
                    self.line_len += 1;
                    if b == b'\r' {
                        if !self.colon {
                            return Err(ChunkError::Syntax);
                        }
                        self.state = State::TrailerLf;
                    } else if !self.colon {
                        if b == b':' {
                            self.colon = true;
                        } else if !is_token(b) {
                            return Err(ChunkError::Syntax);
                        }
                    } else if (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(ChunkError::Syntax);
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Syntax);
                    }
                    self.trailer(1)?;
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError::Syntax);
                    }
                    self.state = State::Done;
                    return Ok(Decoded {
                        consumed: i + 1,
                        data: None,
                        done: true,
                    });
                }
                State::Done => {
                    return Ok(Decoded {
                        consumed: i,
                        data: None,
                        done: true,
                    })
                }
            }
            i += 1;
        }
        Ok(Decoded {
            consumed: i,
            data: None,
            done: self.state == State::Done,
        })
    }

    fn ext(&mut self, n: usize) -> Result<(), ChunkError> {
        self.ext_used += n;
        if self.ext_used > self.ext_limit {
            return Err(ChunkError::TooLarge);
        }
        Ok(())
    }

    fn trailer(&mut self, n: usize) -> Result<(), ChunkError> {
        self.trailer_used += n;
        if self.trailer_used > self.trailer_limit {
            return Err(ChunkError::TooLarge);
        }
        Ok(())
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

/// A `tchar` (RFC 9110 §5.6.2).
pub fn is_token(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// Writes the line that opens a chunk of `len` bytes (`len` > 0) into `out`.
pub fn encode_size(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the data and whether the
    /// body ended.
    fn run(input: &[u8], step: usize) -> Result<(Vec<u8>, bool, usize), ChunkError> {
        let mut d = Decoder::new(64, 64);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut done = false;
        while pos < input.len() && !done {
            let end = (pos + step).min(input.len());
            let piece = &input[pos..end];
            let r = d.decode(piece)?;
            if let Some(r2) = r.data.clone() {
                out.extend_from_slice(&piece[r2]);
            }
            pos += r.consumed;
            done = r.done;
        }
        Ok((out, done, pos))
    }

    #[test]
    fn decodes_in_any_pieces() {
        let body = b"5\r\nhello\r\n6;a=\"x;y\"\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nGET";
        for step in 1..body.len() {
            let (data, done, used) = run(body, step).unwrap();
            assert_eq!(data, b"hello world");
            assert!(done);
            assert_eq!(&body[used..], b"GET", "step {step}");
        }
    }

    #[test]
    fn refuses_what_a_lax_reader_would_split_otherwise() {
        for bad in [
            &b"ZZ\r\n"[..],
            b"\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"-5\r\n",
            b" 5\r\nhello\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\rhello",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5;a=\x00\r\nhello\r\n",
            b"5;a\nb\r\nhello\r\n",
            b"0\r\n X: 1\r\n\r\n",
            b"0\r\n: 1\r\n\r\n",
            b"0\r\nX 1\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n\n",
            b"10000000000000000\r\n",
            b"ffffffffffffffff0\r\n",
        ] {
            assert!(run(bad, 1).is_err(), "{:?}", String::from_utf8_lossy(bad));
            assert!(
                run(bad, bad.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn sizes_near_the_limit() {
        let mut d = Decoder::new(0, 0);
        let r = d.decode(b"ffffffffffffffff\r\nab").unwrap();
        assert_eq!(r.data, Some(18..20));
        assert_eq!(d.remaining_in_chunk(), u64::MAX - 2);
        let mut d = Decoder::new(0, 0);
        assert!(d.decode(b"0000000000000000005\r\n").is_ok());
    }

    #[test]
    fn extensions_and_trailers_are_bounded() {
        let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(100));
        assert_eq!(run(long.as_bytes(), 7), Err(ChunkError::TooLarge));
        let many = "1;aaaaaaaaaa\r\nx\r\n".repeat(10) + "0\r\n\r\n";
        assert_eq!(run(many.as_bytes(), 5), Err(ChunkError::TooLarge));
        let trailer = format!("0\r\nX: {}\r\n\r\n", "b".repeat(100));
        assert_eq!(run(trailer.as_bytes(), 3), Err(ChunkError::TooLarge));
    }

    #[test]
    fn encodes_sizes() {
        let mut v = Vec::new();
        encode_size(&mut v, 1);
        encode_size(&mut v, 255);
        encode_size(&mut v, 16384);
        assert_eq!(v, b"1\r\nff\r\n4000\r\n");
    }
}
