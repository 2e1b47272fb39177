//! Moving test pattern that carries its frame id in the pixels.
//!
//! Luma: a diagonal gradient and a vertical bar that move every frame (so the encoder has
//! motion to code), and at the top two rows of [`ID_BITS`] blocks: row 0 holds the 32-bit
//! frame id, most significant bit first (white = 1, black = 0), row 1 the same bits
//! inverted. [`read_id`] recovers the id from a decoded picture and rejects a picture where
//! the two rows disagree, so a receiver can check order and duplicates. Chroma is flat grey
//! with a moving tint.

use super::{Captured, FrameSource, Pacer, SourceError, SourceFormat};

/// Bits of frame id drawn per row.
pub const ID_BITS: u32 = 32;
const WHITE: u8 = 235;
const BLACK: u8 = 16;

/// Block size (width, height) in pixels of one id bit for a `width × height` picture.
pub fn block_size(width: u32, height: u32) -> (u32, u32) {
    ((width / ID_BITS).max(1), (height / 16).clamp(2, 32))
}

/// Draws frame `id` into the I420 buffer `dst` of a `width × height` picture.
pub fn draw(dst: &mut [u8], width: u32, height: u32, id: u64) {
    let (w, h) = (width as usize, height as usize);
    let (y_plane, chroma) = dst.split_at_mut(w * h);
    let (bw, bh) = block_size(width, height);
    let (bw, bh) = (bw as usize, bh as usize);
    let shift = (id as usize).wrapping_mul(4);
    let bar = (id as usize).wrapping_mul(8) % w;
    for (y, row) in y_plane.chunks_exact_mut(w).enumerate() {
        if y < 2 * bh {
            let inverted = y >= bh;
            for (x, px) in row.iter_mut().enumerate() {
                let bit = x / bw;
                *px = if bit >= ID_BITS as usize {
                    BLACK
                } else {
                    let one = (id >> (ID_BITS as usize - 1 - bit)) & 1 == 1;
                    if one != inverted { WHITE } else { BLACK }
                };
            }
            continue;
        }
        for (x, px) in row.iter_mut().enumerate() {
            *px = if x.abs_diff(bar) < 16 {
                WHITE
            } else {
                (32 + ((x + y + shift) % 192)) as u8
            };
        }
    }
    let tint = 128u8.wrapping_add(((id % 64) as u8).wrapping_sub(32));
    let c = (w / 2) * (h / 2);
    chroma[..c].fill(tint);
    chroma[c..2 * c].fill(128);
}

/// Reads the frame id from the luma plane of a decoded pattern picture (stride = width).
/// None if the id rows and their inverse disagree (not a pattern frame, or too damaged).
pub fn read_id(y_plane: &[u8], width: u32, height: u32) -> Option<u64> {
    let (w, _) = (width as usize, height as usize);
    let (bw, bh) = block_size(width, height);
    let (bw, bh) = (bw as usize, bh as usize);
    if y_plane.len() < w * 2 * bh {
        return None;
    }
    let mean = |row0: usize, bit: usize| -> u32 {
        // Sample the centre half of the block to stay clear of ringing at its edges.
        let (x0, x1) = (bit * bw + bw / 4, bit * bw + bw * 3 / 4);
        let (y0, y1) = (row0 + bh / 4, row0 + bh * 3 / 4);
        let mut sum = 0u32;
        let mut n = 0u32;
        for y in y0..y1.max(y0 + 1) {
            for x in x0..x1.max(x0 + 1) {
                sum += y_plane[y * w + x] as u32;
                n += 1;
            }
        }
        sum / n
    };
    let mut id = 0u64;
    for bit in 0..ID_BITS as usize {
        let a = mean(0, bit) > 125;
        let b = mean(bh, bit) > 125;
        if a == b {
            return None;
        }
        id = id << 1 | a as u64;
    }
    Some(id)
}

/// The pattern as a [`FrameSource`], paced at its frame rate; never ends.
pub struct PatternSource {
    format: SourceFormat,
    next_id: u64,
    id_offset: u64,
    pacer: Pacer,
}

impl PatternSource {
    /// A pattern of the given size and rate.
    pub fn new(format: SourceFormat) -> PatternSource {
        Self::with_id_offset(format, 0)
    }

    /// A pattern that draws `frame id + offset` into its pictures (the right eye of a
    /// stereo pair, so that the halves can be told apart); frame ids stay 0, 1, 2...
    pub fn with_id_offset(format: SourceFormat, offset: u64) -> PatternSource {
        PatternSource {
            format,
            next_id: 0,
            id_offset: offset,
            pacer: Pacer::new(format.frame_interval_ns()),
        }
    }
}

impl FrameSource for PatternSource {
    fn format(&self) -> SourceFormat {
        self.format
    }

    fn next_frame(&mut self, dst: &mut [u8]) -> Result<Option<Captured>, SourceError> {
        // Drawn ahead, published on schedule (see the Y4M source).
        let id = self.next_id;
        draw(
            dst,
            self.format.width,
            self.format.height,
            id + self.id_offset,
        );
        let capture_ns = self.pacer.wait(id);
        Ok(Some(Captured::numbered(&mut self.next_id, capture_ns)))
    }

    fn resume_at(&mut self, frame_id: u64) -> Result<(), SourceError> {
        self.next_id = frame_id;
        self.pacer = Pacer::new(self.format.frame_interval_ns());
        self.pacer.offset = frame_id;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_roundtrips_and_survives_noise() {
        let (w, h) = (1280u32, 720u32);
        let mut buf = vec![0u8; (w * h * 3 / 2) as usize];
        for id in [0u64, 1, 2, 599, 0xdead_beef, 123_456] {
            draw(&mut buf, w, h, id);
            for (i, p) in buf[..(w * h) as usize].iter_mut().enumerate() {
                *p = p.saturating_add((i % 7) as u8).saturating_sub(3);
            }
            assert_eq!(read_id(&buf[..(w * h) as usize], w, h), Some(id));
        }
        let grey = vec![128u8; (w * h) as usize];
        assert_eq!(read_id(&grey, w, h), None);
    }
}
