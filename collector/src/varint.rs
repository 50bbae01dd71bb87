//! LEB128 varints, as protobuf and the WAL write them: the one writer and
//! reader the WAL codec, the remote write encoder and the label id lists
//! (pipeline and remote write) share.

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The varint at the start of `b` and its length in bytes; None when `b`
/// ends inside it or it is longer than 10 bytes.
pub(crate) fn read_uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The 32-bit ids of a list written with [`put_uvarint`] (stops at the
/// first malformed varint).
pub(crate) struct Ids<'a>(pub(crate) &'a [u8]);

impl Iterator for Ids<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (v, n) = read_uvarint(self.0)?;
        self.0 = &self.0[n..];
        Some(v as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_stop_at_a_cut_varint() {
        let ids = [0u32, 1, 127, 128, 300, 16_384, u32::MAX];
        let mut b = Vec::new();
        for &id in &ids {
            put_uvarint(&mut b, u64::from(id));
        }
        assert_eq!(Ids(&b).collect::<Vec<_>>(), ids);
        b.push(0x80);
        assert_eq!(Ids(&b).count(), ids.len());
        assert_eq!(read_uvarint(&[0xff; 11]), None);
    }
}
