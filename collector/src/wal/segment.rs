//! Segment files: naming, creation, and the scan that validates a segment
//! (and finds its torn or corrupt tail) when the WAL is opened.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::codec::{self, FRAME_HEADER_LEN, RecordType, WalRecord};
use super::error::WalError;

/// Every segment starts with this magic (8 bytes, includes a version).
pub const SEGMENT_MAGIC: &[u8; 8] = b"PSWAL\x00\x00\x01";
/// Offset of the first record in a segment.
pub const SEGMENT_HEADER_LEN: u64 = SEGMENT_MAGIC.len() as u64;

pub fn segment_file_name(n: u64) -> String {
    format!("{n:08}.seg")
}

pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(segment_file_name(n))
}

/// The segment number of a file name such as `00000012.seg`.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment numbers in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| WalError::io("list", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| WalError::io("list", dir, e))?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Creates segment `n` (it must not exist) with its magic written.
pub fn create_segment(dir: &Path, n: u64) -> Result<File, WalError> {
    let path = segment_path(dir, n);
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .read(true)
        .open(&path)
        .map_err(|e| WalError::io("create segment", &path, e))?;
    f.write_all(SEGMENT_MAGIC)
        .map_err(|e| WalError::io("write segment header", &path, e))?;
    Ok(f)
}

/// fsyncs a directory so that created, renamed or removed entries persist.
pub fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io("fsync directory", dir, e))
}

/// What a scan of one segment found.
#[derive(Debug, Default)]
pub struct SegmentScan {
    /// Bytes up to the end of the last valid record (or the header).
    pub valid_len: u64,
    /// The file's length on disk.
    pub file_len: u64,
    /// Samples in the valid records.
    pub samples: u64,
    /// The highest series ref defined in the valid records.
    pub max_ref: Option<u64>,
    /// Why the scan stopped before the end of the file, if it did.
    pub bad_tail: Option<String>,
    /// Whether the segment's magic was missing or wrong.
    pub bad_header: bool,
}

/// Reads a whole segment, validating every record's frame and CRC.
pub fn scan_segment(path: &Path) -> Result<SegmentScan, WalError> {
    let f = File::open(path).map_err(|e| WalError::io("open segment", path, e))?;
    let file_len = f
        .metadata()
        .map_err(|e| WalError::io("stat segment", path, e))?
        .len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut scan = SegmentScan {
        file_len,
        ..Default::default()
    };
    let mut magic = [0u8; SEGMENT_MAGIC.len()];
    if file_len < SEGMENT_HEADER_LEN || r.read_exact(&mut magic).is_err() || &magic != SEGMENT_MAGIC
    {
        scan.bad_header = true;
        scan.bad_tail = Some("missing or wrong segment header".into());
        return Ok(scan);
    }
    let mut off = SEGMENT_HEADER_LEN;
    let mut payload = Vec::new();
    loop {
        if off == file_len {
            break;
        }
        let mut h = [0u8; FRAME_HEADER_LEN];
        if file_len - off < FRAME_HEADER_LEN as u64 {
            scan.bad_tail = Some(format!("torn frame header at offset {off}"));
            break;
        }
        r.read_exact(&mut h)
            .map_err(|e| WalError::io("read segment", path, e))?;
        let fh = match codec::parse_frame_header(&h) {
            Ok(fh) => fh,
            Err(e) => {
                scan.bad_tail = Some(format!("bad frame at offset {off}: {e}"));
                break;
            }
        };
        let end = off + FRAME_HEADER_LEN as u64 + u64::from(fh.len);
        if end > file_len {
            scan.bad_tail = Some(format!(
                "torn record at offset {off}: {} payload bytes announced, {} present",
                fh.len,
                file_len - off - FRAME_HEADER_LEN as u64
            ));
            break;
        }
        payload.resize(fh.len as usize, 0);
        r.read_exact(&mut payload)
            .map_err(|e| WalError::io("read segment", path, e))?;
        if let Err(e) = codec::check_crc(&fh, &payload) {
            scan.bad_tail = Some(format!("corrupt record at offset {off}: {e}"));
            break;
        }
        match RecordType::from_u8(fh.typ) {
            Some(RecordType::Samples) => {
                scan.samples += codec::samples_count(&payload).unwrap_or(0);
            }
            Some(RecordType::Series) => match codec::decode_payload(fh.typ, &payload) {
                Ok(WalRecord::Series(defs)) => {
                    if let Some(m) = defs.iter().map(|d| d.series.0).max() {
                        scan.max_ref = Some(scan.max_ref.map_or(m, |x| x.max(m)));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    scan.bad_tail = Some(format!("undecodable record at offset {off}: {e}"));
                    break;
                }
            },
            Some(RecordType::Metadata) => {}
            None => {
                scan.bad_tail = Some(format!("unknown record type {} at offset {off}", fh.typ));
                break;
            }
        }
        off = end;
    }
    scan.valid_len = off;
    Ok(scan)
}
