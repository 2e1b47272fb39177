//! RTP and RTCP over a byte stream (RFC 4571 §2: each packet preceded by its length as a
//! 16-bit big-endian number): the receiving side's splitter. (The sender is
//! `vr_stream::net::TcpSender`.)

/// Splits an RFC 4571 byte stream into packets: calls `f` with each whole packet at the
/// front of `buf` and returns how many bytes were consumed (the rest is an incomplete
/// packet; keep it for the next read).
pub fn rfc4571_packets<'a>(buf: &'a [u8], mut f: impl FnMut(&'a [u8])) -> usize {
    let mut at = 0;
    while buf.len() - at >= 2 {
        let n = u16::from_be_bytes([buf[at], buf[at + 1]]) as usize;
        if buf.len() - at - 2 < n {
            break;
        }
        f(&buf[at + 2..at + 2 + n]);
        at += 2 + n;
    }
    at
}
