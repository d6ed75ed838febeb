//! Where HTTP/2 frames begin and end in a byte stream (RFC 9113 §3.4,
//! §4.1), read from their 9-byte headers alone.
//!
//! The flood budget ([`super::flood`]) needs to know what kind of frame a
//! client sends and whether it carries anything, not what it says: so only
//! headers are read (and, for padded DATA and HEADERS, the pad length, to
//! tell an empty frame from a padded one). Payloads are skipped as they
//! pass, never held: a follower keeps at most one frame header, whatever
//! the frame sizes. Checking frames is h2's job; a stream that does not
//! start with the client preface is simply no longer followed (h2 refuses
//! the connection anyway).

/// What a client sends first (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 §6).
pub(crate) mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (RFC 9113 §6); their meaning depends on the type.
pub(crate) mod flag {
    /// SETTINGS and PING: an answer, not a request.
    pub const ACK: u8 = 0x1;
    /// DATA and HEADERS: the sender's last frame on the stream.
    pub const END_STREAM: u8 = 0x1;
    /// HEADERS and CONTINUATION: the header block is complete.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA and HEADERS: a pad length byte first, padding last.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: 5 bytes of priority before the header block.
    pub const PRIORITY: u8 = 0x20;
}

/// Length of a frame header.
const HEAD: usize = 9;

/// Length of the priority fields of a HEADERS frame.
const PRIORITY_FIELDS: u32 = 5;

/// One frame, as its header (and pad length) tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The frame type ([`kind`]).
    pub kind: u8,
    /// The flags ([`flag`]).
    pub flags: u8,
    /// The stream it belongs to; 0 for the connection.
    pub stream: u32,
    /// Payload length, padding included.
    pub len: u32,
    /// What the frame carries: the payload less padding and, for HEADERS,
    /// priority fields — DATA's data or a header block fragment.
    pub content: u32,
}

/// Position in one direction's stream of frames.
#[derive(Debug)]
pub(crate) struct Follower {
    state: State,
}

#[derive(Debug)]
enum State {
    /// Bytes of the client preface seen so far.
    Preface(usize),
    /// A frame header, `have` bytes of it read so far.
    Head { buf: [u8; HEAD], have: usize },
    /// A padded frame whose pad length byte comes next.
    PadLength(Frame),
    /// Payload bytes of the current frame still to come.
    Payload(u32),
    /// The stream did not start with the preface: not HTTP/2.
    Lost,
}

impl Follower {
    /// Follows what a client sends: the preface, then frames.
    pub(crate) fn client() -> Self {
        Self {
            state: State::Preface(0),
        }
    }

    /// Follows what a server sends: frames from the first byte.
    pub(crate) fn server() -> Self {
        Self {
            state: State::Head {
                buf: [0; HEAD],
                have: 0,
            },
        }
    }

    /// True between two frames (and before the first).
    pub(crate) fn at_boundary(&self) -> bool {
        matches!(self.state, State::Head { have: 0, .. })
    }

    /// Reads `data`, the next bytes of the stream, and hands `seen` every
    /// frame whose header ends within it — before its payload arrives, so a
    /// frame is known before the peer's HTTP/2 stack acts on it.
    pub(crate) fn feed(&mut self, mut data: &[u8], mut seen: impl FnMut(Frame)) {
        while !data.is_empty() {
            let used = self.step(data, &mut seen);
            data = &data[used..];
        }
    }

    /// Reads from `data` up to the end of the current state; how many
    /// bytes that took (at least one, for non-empty `data`).
    fn step(&mut self, data: &[u8], seen: &mut impl FnMut(Frame)) -> usize {
        match &mut self.state {
            State::Lost => data.len(),
            State::Preface(matched) => {
                let take = (PREFACE.len() - *matched).min(data.len());
                if data[..take] != PREFACE[*matched..*matched + take] {
                    self.state = State::Lost;
                    return data.len();
                }
                *matched += take;
                if *matched == PREFACE.len() {
                    *self = Self::server();
                }
                take
            }
            State::Head { buf, have } => {
                let take = (HEAD - *have).min(data.len());
                buf[*have..*have + take].copy_from_slice(&data[..take]);
                *have += take;
                if *have == HEAD {
                    let frame = parse_head(buf);
                    self.begin(frame, seen);
                }
                take
            }
            State::PadLength(frame) => {
                let mut frame = *frame;
                // The pad length byte itself is part of the payload.
                let mut content = frame.len - 1;
                content = content.saturating_sub(u32::from(data[0]));
                if frame.kind == kind::HEADERS && frame.flags & flag::PRIORITY != 0 {
                    content = content.saturating_sub(PRIORITY_FIELDS);
                }
                frame.content = content;
                seen(frame);
                self.skip(frame.len - 1);
                1
            }
            State::Payload(left) => {
                let take = (*left).min(u32::try_from(data.len()).unwrap_or(u32::MAX));
                *left -= take;
                if *left == 0 {
                    *self = Self::server();
                }
                take as usize
            }
        }
    }

    /// A frame header was read: report the frame now, or once its pad
    /// length is known.
    fn begin(&mut self, mut frame: Frame, seen: &mut impl FnMut(Frame)) {
        let padded = matches!(frame.kind, kind::DATA | kind::HEADERS)
            && frame.flags & flag::PADDED != 0
            && frame.len > 0;
        if padded {
            self.state = State::PadLength(frame);
            return;
        }
        if frame.kind == kind::HEADERS && frame.flags & flag::PRIORITY != 0 {
            frame.content = frame.len.saturating_sub(PRIORITY_FIELDS);
        }
        seen(frame);
        self.skip(frame.len);
    }

    fn skip(&mut self, len: u32) {
        self.state = if len == 0 {
            State::Head {
                buf: [0; HEAD],
                have: 0,
            }
        } else {
            State::Payload(len)
        };
    }
}

fn parse_head(b: &[u8; HEAD]) -> Frame {
    let len = u32::from_be_bytes([0, b[0], b[1], b[2]]);
    Frame {
        kind: b[3],
        flags: b[4],
        // The top bit is reserved.
        stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        len,
        content: len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("small payload");
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream.to_be_bytes());
        out.extend(payload);
        out
    }

    fn follow(f: &mut Follower, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut seen = Vec::new();
        for c in chunks {
            f.feed(c, |fr| seen.push(fr));
        }
        seen
    }

    fn client_bytes() -> (Vec<u8>, Vec<Frame>) {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(kind::SETTINGS, 0, 0, &[0; 12]));
        bytes.extend(frame(kind::HEADERS, flag::END_HEADERS, 1, b"hpack"));
        bytes.extend(frame(kind::DATA, 0, 1, &[7; 100]));
        bytes.extend(frame(kind::DATA, flag::END_STREAM, 1, b""));
        bytes.extend(frame(kind::PING, 0, 0, &[0; 8]));
        let expected = vec![
            Frame {
                kind: kind::SETTINGS,
                flags: 0,
                stream: 0,
                len: 12,
                content: 12,
            },
            Frame {
                kind: kind::HEADERS,
                flags: flag::END_HEADERS,
                stream: 1,
                len: 5,
                content: 5,
            },
            Frame {
                kind: kind::DATA,
                flags: 0,
                stream: 1,
                len: 100,
                content: 100,
            },
            Frame {
                kind: kind::DATA,
                flags: flag::END_STREAM,
                stream: 1,
                len: 0,
                content: 0,
            },
            Frame {
                kind: kind::PING,
                flags: 0,
                stream: 0,
                len: 8,
                content: 8,
            },
        ];
        (bytes, expected)
    }

    #[test]
    fn frames_after_the_preface_whole_or_split_anywhere() {
        let (bytes, expected) = client_bytes();
        assert_eq!(follow(&mut Follower::client(), &[&bytes]), expected);
        // Every split point, across the preface, headers and payloads.
        for at in 0..bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(
                follow(&mut Follower::client(), &[a, b]),
                expected,
                "split at {at}"
            );
        }
        // One byte at a time.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        let mut f = Follower::client();
        assert_eq!(follow(&mut f, &singles), expected);
        assert!(f.at_boundary());
    }

    #[test]
    fn a_frame_is_reported_once_its_header_is_read() {
        let mut f = Follower::server();
        let big = frame(kind::DATA, 0, 3, &vec![1; 16_384]);
        // Header only: the frame is known, its payload not yet arrived.
        let seen = follow(&mut f, &[&big[..HEAD]]);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].len, 16_384);
        assert!(!f.at_boundary());
        assert!(follow(&mut f, &[&big[HEAD..HEAD + 5000]]).is_empty());
        assert!(follow(&mut f, &[&big[HEAD + 5000..]]).is_empty());
        assert!(f.at_boundary());
    }

    #[test]
    fn large_payloads_are_skipped_without_being_held() {
        // A 16 MiB frame (the largest length field) in 64 KiB reads: the
        // follower's state is the same few bytes throughout.
        let mut f = Follower::server();
        let len: u32 = (1 << 24) - 1;
        let mut head = len.to_be_bytes()[1..].to_vec();
        head.extend([kind::DATA, 0, 0, 0, 0, 1]);
        assert_eq!(follow(&mut f, &[&head]).len(), 1);
        let chunk = vec![0u8; 65_536];
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            assert!(follow(&mut f, &[&chunk[..n]]).is_empty());
            left -= n;
        }
        assert!(f.at_boundary());
        assert!(std::mem::size_of::<Follower>() <= 32);
        let ping = frame(kind::PING, 0, 0, &[0; 8]);
        assert_eq!(follow(&mut f, &[&ping])[0].kind, kind::PING);
    }

    #[test]
    fn padding_is_not_content() {
        let mut f = Follower::server();
        // DATA: pad length 4, no data, 4 bytes of padding.
        let padded_empty = frame(kind::DATA, flag::PADDED, 1, &[4, 0, 0, 0, 0]);
        // DATA: pad length 1, 2 bytes of data.
        let padded_data = frame(kind::DATA, flag::PADDED, 1, &[1, 9, 9, 0]);
        // HEADERS with priority and padding around a 3-byte fragment.
        let mut p = vec![2, 0, 0, 0, 0, 16];
        p.extend(b"abc\0\0");
        let headers = frame(kind::HEADERS, flag::PADDED | flag::PRIORITY, 1, &p);
        // HEADERS with priority only, and an empty fragment.
        let prio_only = frame(kind::HEADERS, flag::PRIORITY, 3, &[0, 0, 0, 0, 16]);
        // Too short for its own pad length: nothing carried.
        let short = frame(kind::DATA, flag::PADDED, 1, &[9]);
        let all = [padded_empty, padded_data, headers, prio_only, short].concat();
        for at in 0..all.len() {
            let (a, b) = all.split_at(at);
            let content: Vec<u32> = follow(&mut f, &[a, b]).iter().map(|x| x.content).collect();
            assert_eq!(content, [0, 2, 3, 0, 0], "split at {at}");
            assert!(f.at_boundary());
        }
    }

    #[test]
    fn not_http2_is_not_followed() {
        let mut f = Follower::client();
        let seen = follow(&mut f, &[b"GET / HTTP/1.1\r\n", &[0; 64]]);
        assert!(seen.is_empty());
        let mut f = Follower::client();
        // The preface split, then wrong.
        assert!(follow(
            &mut f,
            &[&PREFACE[..10], b"XX", &frame(kind::PING, 0, 0, &[0; 8])]
        )
        .is_empty());
    }

    #[test]
    fn the_reserved_bit_is_not_part_of_the_stream() {
        let mut f = Follower::server();
        let mut bytes = frame(kind::HEADERS, flag::END_HEADERS, 5, b"x");
        bytes[5] |= 0x80;
        assert_eq!(follow(&mut f, &[&bytes])[0].stream, 5);
    }
}
