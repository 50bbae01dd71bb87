//! Per-consumer checkpoint files: `consumers/<name>.ckpt`, holding the WAL
//! position up to which the consumer has delivered everything. Written
//! atomically: a temporary file, fsync, rename, fsync of the directory.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::WalError;
use super::position::WalPosition;
use super::segment::sync_dir;

const MAGIC: &[u8; 8] = b"PSWCKPT1";
const FILE_LEN: usize = 8 + 8 + 8 + 4;
const EXT: &str = ".ckpt";

/// Encodes a consumer name as a file name: `[A-Za-z0-9_-]` kept, every
/// other byte as `%XX`.
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn decode_name(file_stem: &str) -> Option<String> {
    let b = file_stem.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = file_stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn checkpoint_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}{EXT}", encode_name(name)))
}

/// Writes `name`'s checkpoint atomically.
pub fn write_checkpoint(dir: &Path, name: &str, pos: WalPosition) -> Result<(), WalError> {
    let path = checkpoint_path(dir, name);
    let tmp = path.with_extension("ckpt.tmp");
    let mut buf = Vec::with_capacity(FILE_LEN);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&pos.segment.to_le_bytes());
    buf.extend_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let mut f = File::create(&tmp).map_err(|e| WalError::io("create checkpoint", &tmp, e))?;
    f.write_all(&buf)
        .and_then(|_| f.sync_all())
        .map_err(|e| WalError::io("write checkpoint", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| WalError::io("rename checkpoint", &path, e))?;
    sync_dir(dir)
}

/// Reads a checkpoint file; `None` (with a warning) when it is damaged.
pub fn read_checkpoint(path: &Path) -> Result<Option<WalPosition>, WalError> {
    let b = fs::read(path).map_err(|e| WalError::io("read checkpoint", path, e))?;
    if b.len() != FILE_LEN || &b[..8] != MAGIC {
        tracing::warn!(path = %path.display(), "WAL consumer checkpoint is damaged; the consumer restarts at the oldest segment");
        return Ok(None);
    }
    let crc = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    if crc32fast::hash(&b[..24]) != crc {
        tracing::warn!(path = %path.display(), "WAL consumer checkpoint fails its CRC; the consumer restarts at the oldest segment");
        return Ok(None);
    }
    let mut seg = [0u8; 8];
    seg.copy_from_slice(&b[8..16]);
    let mut off = [0u8; 8];
    off.copy_from_slice(&b[16..24]);
    Ok(Some(WalPosition {
        segment: u64::from_le_bytes(seg),
        offset: u64::from_le_bytes(off),
    }))
}

/// All checkpoints in `dir`: (consumer name, position if readable).
/// Leftover temporary files are removed.
pub fn load_checkpoints(dir: &Path) -> Result<Vec<(String, Option<WalPosition>)>, WalError> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| WalError::io("list", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| WalError::io("list", dir, e))?;
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if fname.ends_with(".ckpt.tmp") {
            let _ = fs::remove_file(entry.path());
            continue;
        }
        let Some(stem) = fname.strip_suffix(EXT) else {
            continue;
        };
        let Some(name) = decode_name(stem) else {
            continue;
        };
        out.push((name, read_checkpoint(&entry.path())?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub fn remove_checkpoint(dir: &Path, name: &str) -> Result<(), WalError> {
    let path = checkpoint_path(dir, name);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WalError::io("remove checkpoint", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_file_names() {
        for n in ["q1", "remote/write:9090", "ä b", "%"] {
            let enc = encode_name(n);
            assert!(!enc.contains('/'));
            assert_eq!(decode_name(&enc).as_deref(), Some(n));
        }
    }
}
