//! JPEGs judged on their primary image: phone photos with an MP4 or a second
//! JPEG after the primary image's end decode like the bare JPEG, and a
//! primary image cut short is truncated whatever follows it.

use image::RgbImage;
use smolvlm::image::{ImageOptions, PreparedImage, Preprocessor, VisionParams};
use smolvlm::{Error, ImageError};
use smolvlm_testkit::images::{gradient, noise, with_exif_orientation};

use crate::image::photo_like;
use crate::util::{greedy, model, TempDir};

/// A phone-like primary image: a 640x480 photo-like JPEG with an EXIF
/// orientation (rotated 90°), so that the fast path's axis swap is covered.
fn primary() -> Vec<u8> {
    with_exif_orientation(&jpeg(&photo_like(640, 480), 90), 6)
}

fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

/// `img` through jpeg-encoder, with its progressive or restart settings.
fn jpeg_with(
    img: &RgbImage,
    set: impl FnOnce(&mut jpeg_encoder::Encoder<&mut Vec<u8>>),
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    set(&mut encoder);
    encoder
        .encode(
            img.as_raw(),
            u16::try_from(img.width()).unwrap(),
            u16::try_from(img.height()).unwrap(),
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
    out
}

/// An ISO BMFF box: 32-bit size, type, payload.
fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = u32::try_from(8 + payload.len())
        .unwrap()
        .to_be_bytes()
        .to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(payload);
    b
}

/// A Motion Photo's video as phones append it: an `ftyp` box and an `mdat`
/// box whose payload holds end-of-image and start-of-scan pairs, ending with
/// a start of scan (the old rule took the file's last SOS for the image's).
fn mp4() -> Vec<u8> {
    let mut ftyp = b"isom".to_vec();
    ftyp.extend_from_slice(&0x200u32.to_be_bytes());
    for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
        ftyp.extend_from_slice(brand);
    }
    let mut mdat = noise(40, 30, 21).into_raw();
    mdat.extend_from_slice(&[0xFF, 0xD9, 0xFF, 0xDA, 0x00, 0x0C]);
    mdat.extend_from_slice(&noise(40, 30, 22).into_raw());
    mdat.extend_from_slice(&[0xFF, 0xD9, 0x12, 0xFF, 0xDA, 0x00, 0x08, 0x03]);
    let mut out = mp4_box(b"ftyp", &ftyp);
    out.extend_from_slice(&mp4_box(b"mdat", &mdat));
    out
}

/// An MPF file as Ultra HDR writes it: the primary image with an APP2 `MPF`
/// segment indexing both images, then the second image (the gain map).
fn with_mpf(primary: &[u8], second: &[u8]) -> Vec<u8> {
    const ENTRIES: u32 = 3;
    // APP2 payload: "MPF\0", a big-endian TIFF header, the MP index IFD and
    // two 16-byte MP entries; offsets count from the TIFF header.
    let ifd_len = 2 + 12 * ENTRIES + 4;
    let entries_at = 8 + ifd_len;
    let payload_len = 4 + entries_at + 32;
    let segment_len = 4 + payload_len; // marker + length + payload
    let tiff_at = 2 + 4 + 4; // SOI, APP2 marker and length, "MPF\0"
    let primary_len = u32::try_from(primary.len()).unwrap() + segment_len;
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&u16::try_from(ENTRIES).unwrap().to_be_bytes());
    let mut entry = |tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        tiff.extend_from_slice(&tag.to_be_bytes());
        tiff.extend_from_slice(&kind.to_be_bytes());
        tiff.extend_from_slice(&count.to_be_bytes());
        tiff.extend_from_slice(&value);
    };
    entry(0xB000, 7, 4, *b"0100"); // MPFVersion
    entry(0xB001, 4, 1, 2u32.to_be_bytes()); // NumberOfImages
    entry(0xB002, 7, 32, entries_at.to_be_bytes()); // MPEntry
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    for (attribute, size, offset) in [
        (0x2003_0000u32, primary_len, 0),
        (
            0,
            u32::try_from(second.len()).unwrap(),
            primary_len - tiff_at,
        ),
    ] {
        tiff.extend_from_slice(&attribute.to_be_bytes());
        tiff.extend_from_slice(&size.to_be_bytes());
        tiff.extend_from_slice(&offset.to_be_bytes());
        tiff.extend_from_slice(&[0; 4]);
    }
    let mut out = primary[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE2]);
    out.extend_from_slice(&u16::try_from(payload_len + 2).unwrap().to_be_bytes());
    out.extend_from_slice(b"MPF\0");
    out.extend_from_slice(&tiff);
    out.extend_from_slice(&primary[2..]);
    assert_eq!(out.len(), usize::try_from(primary_len).unwrap());
    out.extend_from_slice(second);
    out
}

/// Random bytes with end-of-image and start-of-scan pairs, the last one a
/// start of scan.
fn random_trailer() -> Vec<u8> {
    let mut t = noise(50, 20, 23).into_raw();
    t.extend_from_slice(&[0xFF, 0xD9, 0xFF, 0xD9, 0x00, 0xFF, 0xDA]);
    t.extend_from_slice(&noise(30, 10, 24).into_raw());
    t.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x0C]);
    t
}

fn appended(primary: &[u8], trailer: &[u8]) -> Vec<u8> {
    [primary, trailer].concat()
}

/// The tiny model's projector (a 1/2-scale fast decode for 640x480), and
/// one with 512-px tiles (a full decode).
fn visions() -> [VisionParams; 2] {
    [
        model().vision(),
        VisionParams {
            tile_size: 512,
            longest_edge: Some(2048),
            tokens_per_tile: 64,
            pixels_per_token: 4096,
            max_tiles: None,
        },
    ]
}

fn options() -> [ImageOptions; 2] {
    [
        ImageOptions::default(),
        ImageOptions::default().with_fast_jpeg(false),
    ]
}

fn prepare(
    vision: VisionParams,
    options: ImageOptions,
    bytes: &[u8],
) -> Result<PreparedImage, ImageError> {
    Preprocessor::new(vision, options).prepare(bytes.into())
}

/// `with` prepares exactly as `bare` does: same plan, decode scale and
/// pixels, for each projector and with and without the fast JPEG path.
fn assert_prepares_like(bare: &[u8], with: &[u8], what: &str) {
    for vision in visions() {
        for options in options() {
            let expected = prepare(vision, options.clone(), bare).unwrap();
            let got = prepare(vision, options.clone(), with)
                .unwrap_or_else(|e| panic!("{what} ({vision:?}, {options:?}): {e}"));
            assert_eq!(got.plan(), expected.plan(), "{what}");
            assert_eq!(got.decode_scale(), expected.decode_scale(), "{what}");
            assert!(got.image() == expected.image(), "{what}: the pixels differ");
        }
    }
}

fn assert_truncated(bytes: &[u8], what: &str) {
    for options in options() {
        match prepare(model().vision(), options.clone(), bytes) {
            Err(e @ ImageError::Truncated { .. }) => {
                assert_eq!(Error::from(e).kind(), "image_truncated");
            }
            Err(e) => panic!("{what}: expected image_truncated, got {e}"),
            Ok(p) => panic!(
                "{what}: expected image_truncated, got a {:?} image",
                p.image().dimensions()
            ),
        }
    }
}

#[test]
fn data_after_the_primary_image_is_ignored() {
    let bare = primary();
    let second = jpeg(&gradient(320, 240), 85);
    let cases = [
        ("an MP4 appended (Motion Photo)", appended(&bare, &mp4())),
        (
            "a second JPEG appended (MPF / Ultra HDR)",
            with_mpf(&bare, &second),
        ),
        (
            "a second JPEG and an MP4 (Ultra HDR Motion Photo)",
            appended(&with_mpf(&bare, &second), &mp4()),
        ),
        ("random bytes appended", appended(&bare, &random_trailer())),
    ];
    let dir = TempDir::new("jpeg-trailers");
    let bare_path = dir.path("bare.jpg");
    std::fs::write(&bare_path, &bare).unwrap();
    let mut session = model().session().unwrap();
    let expected = session
        .caption(&bare, "Describe this image.", &greedy())
        .unwrap();
    let bare_plan = Preprocessor::new(model().vision(), ImageOptions::default())
        .plan_file(&bare_path)
        .unwrap();
    for (i, (what, bytes)) in cases.iter().enumerate() {
        assert_prepares_like(&bare, bytes, what);
        // From a file, the way the CLI reads it, and captioned.
        let path = dir.path(&format!("{i}.jpg"));
        std::fs::write(&path, bytes).unwrap();
        let preprocessor = Preprocessor::new(model().vision(), ImageOptions::default());
        assert_eq!(preprocessor.plan_file(&path).unwrap(), bare_plan, "{what}");
        let caption = session
            .caption(&path, "Describe this image.", &greedy())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(caption.tokens, expected.tokens, "{what}");
    }
}

/// Offset of the first `FF marker` pair in `bytes`.
fn marker_at(bytes: &[u8], marker: u8) -> usize {
    bytes
        .windows(2)
        .position(|w| w == [0xFF, marker])
        .unwrap_or_else(|| panic!("no FF {marker:02X} marker"))
}

#[test]
fn a_primary_image_cut_short_is_truncated_whatever_follows_it() {
    let bare = primary();
    let len = bare.len();
    let (app1, dqt, sof, sos) = (
        marker_at(&bare, 0xE1),
        marker_at(&bare, 0xDB),
        marker_at(&bare, 0xC0),
        marker_at(&bare, 0xDA),
    );
    let cuts = [
        ("inside the EXIF segment", app1 + 10),
        ("right after a marker", dqt + 2),
        ("inside a segment length", dqt + 3),
        ("inside the frame header", sof + 6),
        ("inside the scan header", sos + 5),
        ("inside the entropy-coded data", sos + (len - sos) / 2),
        ("just before the end-of-image marker", len - 2),
        ("between FF and D9", len - 1),
    ];
    let second = jpeg(&gradient(320, 240), 85);
    for (what, cut) in cuts {
        let cut_short = &bare[..cut];
        assert_truncated(cut_short, what);
        assert_truncated(&appended(cut_short, &random_trailer()[..100]), what);
        // A JPEG appended to the cut primary image (its end-of-image marker
        // the file's last, after its last start of scan) does not make it
        // whole. A cut inside a header segment is different: the segment's
        // length swallows the appended image's start, and the walk cannot
        // tell its segments from the primary's; the decoders refuse it.
        let with_second = appended(cut_short, &second);
        if cut >= sos {
            assert_truncated(&with_second, &format!("{what}, a JPEG appended"));
        } else {
            for options in options() {
                assert!(
                    prepare(model().vision(), options, &with_second).is_err(),
                    "{what}, a JPEG appended: decoded"
                );
            }
        }
    }
}

#[test]
fn progressive_and_restart_marker_jpegs_are_complete() {
    let img = photo_like(640, 480);
    let progressive = jpeg_with(&img, |e| e.set_progressive(true));
    let restarts = jpeg_with(&img, |e| e.set_restart_interval(4));
    let scans = progressive
        .windows(2)
        .filter(|w| *w == [0xFF, 0xDA])
        .count();
    assert!(scans >= 2, "progressive JPEG with {scans} scan(s)");
    let sos = marker_at(&restarts, 0xDA);
    assert!(
        restarts[sos..]
            .windows(2)
            .any(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1])),
        "no restart markers in the scan"
    );
    let second = jpeg(&gradient(320, 240), 85);
    for (what, bytes) in [("progressive", progressive), ("restart markers", restarts)] {
        for options in options() {
            prepare(model().vision(), options, &bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        assert_prepares_like(&bytes, &appended(&bytes, &mp4()), what);
        assert_prepares_like(&bytes, &with_mpf(&bytes, &second), what);
        let len = bytes.len();
        assert_truncated(&bytes[..len / 2], what);
        assert_truncated(&bytes[..len - 2], what);
        assert_truncated(&appended(&bytes[..len / 2], &second), what);
    }
}

/// A `tracing` writer into memory.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;

    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

#[test]
fn what_follows_the_primary_image_is_named_in_a_debug_log() {
    let bare = primary();
    let second = jpeg(&gradient(320, 240), 85);
    let cases = [
        (appended(&bare, &mp4()), "an MP4 (Motion Photo)"),
        (with_mpf(&bare, &second), "a second JPEG (MPF / Ultra HDR)"),
        (
            appended(&with_mpf(&bare, &second), &mp4()),
            "a second JPEG (MPF / Ultra HDR) and an MP4 (Motion Photo)",
        ),
        (appended(&bare, &random_trailer()), "trailing bytes"),
    ];
    for (bytes, named) in cases {
        let log = Log::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(log.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            prepare(model().vision(), ImageOptions::default(), &bytes).unwrap();
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let trailer = bytes.len() - bare.len();
        assert!(
            text.contains("after the primary image's end") && text.contains(named),
            "{named}: {text}"
        );
        if named == "trailing bytes" {
            assert!(
                text.contains(&format!("{trailer} trailing bytes")),
                "{text}"
            );
        }
    }
}
