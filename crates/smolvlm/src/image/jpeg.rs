//! Where a JPEG's primary image ends, found by walking its marker segments.
//!
//! Phone photos carry data after the primary image's end-of-image marker:
//! Motion Photos append an MP4, Ultra HDR and other MPF files a second JPEG.
//! Those bytes hold `FF D9` and `FF DA` pairs by chance, so whether the
//! primary image is whole can only be told by walking it from its
//! start-of-image marker, segment by segment and scan by scan, to its own
//! end-of-image marker.

/// Start of image: standalone, and only at the very start.
const SOI: u8 = 0xD8;
/// End of image.
const EOI: u8 = 0xD9;
/// Temporary marker, standalone.
const TEM: u8 = 0x01;
/// Restart markers RST0..=RST7, standalone (inside entropy-coded data).
const RST: std::ops::RangeInclusive<u8> = 0xD0..=0xD7;

/// What the walk of a JPEG's primary image found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JpegEnd {
    /// The primary image is whole; its end-of-image marker ends at this
    /// offset (exclusive), and any bytes after it belong to something else.
    Complete(usize),
    /// The bytes end before the primary image does: inside a segment or its
    /// length, inside a scan, or with no end-of-image marker at all.
    Truncated,
    /// Not a structure the walk can follow (no start-of-image marker, a
    /// segment length under 2): left to the decoder, which says what is wrong
    /// in its own words.
    Malformed,
}

/// Walks `bytes` from the start-of-image marker to the primary image's
/// end-of-image marker.
///
/// Every marker other than the standalone ones (SOI, EOI, RST0–7, TEM) is
/// followed by a 2-byte big-endian length that covers the length itself and
/// the segment's payload; the walk skips payloads by their length, so markers
/// inside them (an EXIF thumbnail is a whole JPEG) are never seen. After a
/// scan's header comes entropy-coded data, where `FF 00` is a stuffed 0xFF
/// byte and RST0–7 are standalone: the first other marker ends the scan.
/// Progressive JPEGs have several scans, with tables between them; the walk
/// simply goes on. `FF` fill bytes before a marker, and stray bytes between
/// segments (which decoders skip), are skipped.
///
/// The walk stops at the primary image's end and reads nothing after it. A
/// second start-of-image or start-of-frame marker before that end means the
/// bytes ran into another image (a cut file with more data behind it), so
/// the primary image is truncated. (Hierarchical JPEGs, which have several
/// frames, are read by neither decoder smolvlm uses.)
pub(crate) fn primary_end(bytes: &[u8]) -> JpegEnd {
    if bytes.get(..2) != Some(&[0xFF, SOI][..]) {
        return JpegEnd::Malformed;
    }
    let mut pos = 2;
    let mut framed = false;
    loop {
        let Some((marker, after)) = next_marker(bytes, pos) else {
            return JpegEnd::Truncated;
        };
        pos = after;
        match marker {
            EOI => return JpegEnd::Complete(pos),
            SOI => return JpegEnd::Truncated,
            TEM => {}
            m if RST.contains(&m) => {}
            _ => {
                if is_frame_header(marker) {
                    if framed {
                        return JpegEnd::Truncated;
                    }
                    framed = true;
                }
                let Some(len) = bytes
                    .get(pos..)
                    .and_then(|rest| rest.first_chunk::<2>())
                    .map(|b| usize::from(u16::from_be_bytes(*b)))
                else {
                    return JpegEnd::Truncated;
                };
                if len < 2 {
                    return JpegEnd::Malformed;
                }
                match pos.checked_add(len) {
                    Some(end) if end <= bytes.len() => pos = end,
                    _ => return JpegEnd::Truncated,
                }
                // After a scan's header, its entropy-coded data holds no
                // marker but RST0-7, which the loop skips as standalone;
                // `next_marker` skips the data itself and its stuffed bytes.
            }
        }
    }
}

/// The next marker at or after `pos`: its code and the offset just past it.
/// Skips stray bytes, entropy-coded data, stuffed `FF 00` pairs and `FF`
/// fill bytes; `None` when the bytes end first.
fn next_marker(bytes: &[u8], pos: usize) -> Option<(u8, usize)> {
    let mut at = pos;
    loop {
        let ff = at.checked_add(bytes.get(at..)?.iter().position(|&b| b == 0xFF)?)?;
        let code_at = ff.checked_add(1)?;
        match *bytes.get(code_at)? {
            // Fill byte: the marker, if any, follows.
            0xFF => at = code_at,
            // A stuffed 0xFF data byte.
            0x00 => at = code_at.checked_add(1)?,
            code => return Some((code, code_at.checked_add(1)?)),
        }
    }
}

/// Whether `marker` starts a frame (SOF0-15), not DHT, JPG or DAC, which
/// share the range.
fn is_frame_header(marker: u8) -> bool {
    (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Names the bytes after a primary image's end for a debug log: a second
/// JPEG (MPF, Ultra HDR's gain map), an MP4 (a Motion Photo's video), or
/// just their count.
pub(crate) fn describe_trailer(trailer: &[u8]) -> String {
    let n = trailer.len();
    let jpeg = trailer.starts_with(&[0xFF, SOI]);
    // An MP4 starts with its `ftyp` box (size, then the type); a Motion Photo
    // with a gain map has it after the second JPEG.
    let mp4 = trailer.windows(4).any(|w| w == b"ftyp");
    let what = match (jpeg, mp4) {
        (true, true) => "a second JPEG (MPF / Ultra HDR) and an MP4 (Motion Photo)",
        (true, false) => "a second JPEG (MPF / Ultra HDR)",
        (false, true) => "an MP4 (Motion Photo)",
        (false, false) => return format!("{n} trailing bytes after the primary image's end"),
    };
    format!("{n} bytes after the primary image's end: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOS: u8 = 0xDA;

    /// SOI, a DQT-like segment, SOF0, SOS with entropy data, EOI.
    fn minimal(entropy: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, SOI];
        v.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x04, 0xAB, 0xCD]);
        v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x05, 0x08, 0x00, 0x10]);
        v.extend_from_slice(&[0xFF, SOS, 0x00, 0x03, 0x01]);
        v.extend_from_slice(entropy);
        v.extend_from_slice(&[0xFF, EOI]);
        v
    }

    #[test]
    fn a_minimal_stream_ends_at_its_eoi() {
        let v = minimal(&[1, 2, 3]);
        assert_eq!(primary_end(&v), JpegEnd::Complete(v.len()));
    }

    #[test]
    fn bytes_after_the_eoi_are_not_read() {
        let v = minimal(&[1, 2, 3]);
        let end = v.len();
        for trailer in [
            &[0xFF, SOS, 0x00][..],
            &[0xFF, 0xE1, 0xFF, 0xFF],
            &[0xFF, SOI, 0xFF],
            &[0xFF],
        ] {
            let mut w = v.clone();
            w.extend_from_slice(trailer);
            assert_eq!(primary_end(&w), JpegEnd::Complete(end), "{trailer:x?}");
        }
    }

    #[test]
    fn standalone_markers_have_no_length() {
        // TEM and RSTn between segments, RSTn and stuffed bytes in the data:
        // read as lengths, `D0 FF` would skip past the end.
        let mut v = vec![0xFF, SOI, 0xFF, TEM, 0xFF, 0xD0];
        v.extend_from_slice(&minimal(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF, 0xD7])[2..]);
        assert_eq!(primary_end(&v), JpegEnd::Complete(v.len()));
    }

    #[test]
    fn fill_bytes_before_markers_are_skipped() {
        let mut v = vec![0xFF, SOI, 0xFF, 0xFF, 0xFF];
        v.extend_from_slice(&minimal(&[7, 0xFF, 0xFF, 0xD1, 8, 0xFF, 0xFF, 0xFF])[3..]);
        assert_eq!(primary_end(&v), JpegEnd::Complete(v.len()));
    }

    #[test]
    fn stuffed_ff_d9_and_eoi_bytes_inside_segments_do_not_end_the_image() {
        // An APP1 whose payload holds FF D9 (an EXIF thumbnail's end), and
        // entropy data with a stuffed FF before D9.
        let mut v = vec![0xFF, SOI, 0xFF, 0xE1, 0x00, 0x06, 0xFF, SOI, 0xFF, EOI];
        v.extend_from_slice(&minimal(&[0xFF, 0x00, EOI, 0xFF, 0x00, SOS])[2..]);
        assert_eq!(primary_end(&v), JpegEnd::Complete(v.len()));
    }

    #[test]
    fn progressive_scans_with_tables_between_them_are_walked() {
        let mut v = minimal(&[1, 2])[..22].to_vec();
        // A DHT and a second scan after the first scan's data.
        v.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x03, 0x10]);
        v.extend_from_slice(&[0xFF, SOS, 0x00, 0x03, 0x01, 9, 9]);
        v.extend_from_slice(&[0xFF, EOI]);
        assert_eq!(primary_end(&v), JpegEnd::Complete(v.len()));
    }

    #[test]
    fn every_cut_is_truncated_and_nothing_panics() {
        let v = minimal(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        for cut in 2..v.len() {
            assert_eq!(primary_end(&v[..cut]), JpegEnd::Truncated, "cut at {cut}");
        }
        assert_eq!(primary_end(&v[..1]), JpegEnd::Malformed);
        assert_eq!(primary_end(&[]), JpegEnd::Malformed);
    }

    #[test]
    fn a_length_past_the_end_is_truncated_and_one_under_two_malformed() {
        assert_eq!(
            primary_end(&[0xFF, SOI, 0xFF, 0xE0, 0xFF, 0xFF, 0, 0, 0xFF, EOI]),
            JpegEnd::Truncated
        );
        assert_eq!(
            primary_end(&[0xFF, SOI, 0xFF, 0xE0, 0x00, 0x01, 0xFF, EOI]),
            JpegEnd::Malformed
        );
        assert_eq!(primary_end(&[0, 0, 0xFF, EOI]), JpegEnd::Malformed);
    }

    #[test]
    fn running_into_another_image_is_truncated() {
        let v = minimal(&[1, 2, 3, 4]);
        let cut = v.len() - 4;
        // The appended image's SOI ends the cut scan.
        let mut w = v[..cut].to_vec();
        w.extend_from_slice(&v);
        assert_eq!(primary_end(&w), JpegEnd::Truncated);
        // A cut scan header swallows the appended SOI; its frame is the second.
        let mut w = v[..19].to_vec();
        w.extend_from_slice(&v);
        assert_eq!(primary_end(&w), JpegEnd::Truncated);
    }

    #[test]
    fn random_marker_soup_never_panics() {
        // Bytes drawn mostly from 0xFF, 0x00, lengths and marker codes, where
        // a walk is most likely to index past the end or overflow.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = [
            0xFF, 0x00, 0x01, 0x02, 0xD0, SOI, EOI, SOS, 0xC0, 0xC4, 0xE1,
        ];
        for _ in 0..20_000 {
            let len = usize::try_from(next() % 64).unwrap_or(0);
            let mut v = vec![0xFF, SOI];
            v.extend((0..len).map(|_| {
                let r = next();
                alphabet[usize::try_from(r % 11).unwrap_or(0)]
            }));
            match primary_end(&v) {
                JpegEnd::Complete(end) => assert!(end <= v.len() && v[end - 1] == EOI),
                JpegEnd::Truncated | JpegEnd::Malformed => {}
            }
        }
    }

    #[test]
    fn trailers_are_named() {
        assert_eq!(
            describe_trailer(b"\0\0\0\x18ftypisom"),
            "12 bytes after the primary image's end: an MP4 (Motion Photo)"
        );
        assert_eq!(
            describe_trailer(&[0xFF, SOI, 0xFF, EOI]),
            "4 bytes after the primary image's end: a second JPEG (MPF / Ultra HDR)"
        );
        assert!(describe_trailer(&[0xFF, SOI, b'f', b't', b'y', b'p']).contains("and an MP4"));
        assert_eq!(
            describe_trailer(&[0, 0, 0]),
            "3 trailing bytes after the primary image's end"
        );
    }
}
