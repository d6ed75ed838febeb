//! Where WebSocket frames begin and end in a byte stream (RFC 6455 §5.2),
//! read from their headers alone.
//!
//! The tunnel copies bytes, not messages; it only needs to know when a
//! direction stands between two frames, because that is the one place a
//! close frame of the router's own may go in (a control frame may come
//! between the fragments of a message, §5.4, but never inside a frame).
//! Payloads are neither unmasked nor checked: that is the endpoints' job.

/// The close frame's opcode.
const CLOSE: u8 = 0x8;

/// Position in one direction's stream of frames.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    /// The header read so far (2 to 14 bytes).
    head: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// Opcode of the frame whose header was last read.
    opcode: u8,
}

impl Frames {
    /// True between two frames (and before the first).
    pub(crate) fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// Reads `data` up to the end of the current frame at most, and returns
    /// how many bytes that took. Afterwards [`Self::at_boundary`] tells
    /// whether that frame ended within `data`.
    pub(crate) fn step(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        if self.remaining == 0 {
            while used < data.len() {
                self.head[self.have] = data[used];
                self.have += 1;
                used += 1;
                if header_len(&self.head[..self.have]) == Some(self.have) {
                    self.opcode = self.head[0] & 0x0f;
                    self.remaining = payload_len(&self.head[..self.have]);
                    self.have = 0;
                    break;
                }
            }
            if self.remaining == 0 {
                // Either a frame without payload ended, or the header is
                // not complete yet.
                return used;
            }
        }
        let take = self.remaining.min((data.len() - used) as u64);
        self.remaining -= take;
        used + take as usize
    }

    /// True right after [`Self::step`] read the end of a close frame.
    pub(crate) fn ended_close(&self) -> bool {
        self.at_boundary() && self.opcode == CLOSE
    }

    /// Reads all of `data`; true if a close frame ended within it.
    pub(crate) fn ends_close(&mut self, mut data: &[u8]) -> bool {
        let mut closed = false;
        while !data.is_empty() {
            let n = self.step(data);
            data = &data[n..];
            closed |= self.ended_close();
        }
        closed
    }
}

/// Length of a frame header, once its first two bytes are known.
fn header_len(head: &[u8]) -> Option<usize> {
    let second = *head.get(1)?;
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    Some(2 + extended + mask)
}

/// Payload length of a complete frame header.
fn payload_len(head: &[u8]) -> u64 {
    match head[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        127 => u64::from_be_bytes([
            head[2], head[3], head[4], head[5], head[6], head[7], head[8], head[9],
        ]),
        n => u64::from(n),
    }
}

/// A close frame with `code` and `reason`: unmasked from the server side
/// (towards the client), masked with a random key from the client side
/// (towards the backend), as §5.1 requires of each.
pub(crate) fn close_frame(code: u16, reason: &str, masked: bool) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    // Control frame payloads are at most 125 bytes (§5.5).
    payload.extend(reason.bytes().take(123));
    let mut frame = vec![0x80 | CLOSE, payload.len() as u8];
    if masked {
        let key: [u8; 4] = rand::random();
        frame[1] |= 0x80;
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(&payload);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a peer would send it.
    fn frame(opcode: u8, fin: bool, masked: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![opcode | if fin { 0x80 } else { 0 }];
        let m = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n <= 0xffff => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn boundaries_of_every_length_form_fed_a_byte_at_a_time() {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for (len, masked) in [
            (0, false),
            (5, true),
            (125, false),
            (300, true),
            (70_000, false),
        ] {
            stream.extend(frame(0x2, true, masked, &vec![7u8; len]));
            ends.push(stream.len());
        }
        let mut frames = Frames::default();
        assert!(frames.at_boundary());
        let mut seen = Vec::new();
        for (i, b) in stream.iter().enumerate() {
            assert_eq!(frames.step(std::slice::from_ref(b)), 1);
            if frames.at_boundary() {
                seen.push(i + 1);
            }
        }
        assert_eq!(seen, ends);
    }

    #[test]
    fn step_stops_at_the_end_of_a_frame() {
        let first = frame(0x1, false, true, b"hello");
        let mut stream = first.clone();
        stream.extend(frame(0x9, true, true, b"ping"));
        stream.extend(frame(0x0, true, true, b" world"));
        let mut frames = Frames::default();
        assert_eq!(frames.step(&stream), first.len());
        assert!(frames.at_boundary());
        // Half a header is not a boundary.
        let mut frames = Frames::default();
        assert_eq!(frames.step(&stream[..1]), 1);
        assert!(!frames.at_boundary());
    }

    #[test]
    fn a_close_frame_is_noticed_among_others() {
        let mut stream = frame(0x1, true, true, b"bye");
        stream.extend(frame(0x8, true, true, &[0x03, 0xe8]));
        let mut frames = Frames::default();
        assert!(!frames.ends_close(&stream[..stream.len() - 1]));
        assert!(frames.ends_close(&stream[stream.len() - 1..]));
    }

    #[test]
    fn close_frames_as_each_side_must_send_them() {
        let to_client = close_frame(1001, "going away", false);
        assert_eq!(&to_client[..4], &[0x88, 12, 0x03, 0xe9]);
        assert_eq!(&to_client[4..], b"going away");

        let to_backend = close_frame(1001, "", true);
        assert_eq!(to_backend[0..2], [0x88, 0x82]);
        let key = &to_backend[2..6];
        let code = [to_backend[6] ^ key[0], to_backend[7] ^ key[1]];
        assert_eq!(u16::from_be_bytes(code), 1001);
        let mut frames = Frames::default();
        assert!(frames.ends_close(&to_backend));
    }
}
