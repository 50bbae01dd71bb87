//! A named consumer's reader: decoded records in order, from its
//! checkpoint on, waiting for new appends at the end.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::sync::Arc;

use tokio::sync::watch;

use super::codec::{self, FRAME_HEADER_LEN, RecordType, WalRecord};
use super::error::WalError;
use super::handle::Inner;
use super::position::WalPosition;
use super::segment::{self, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};

/// One record and its position (the offset just past it): commit the
/// position once the record is delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct WalEntry {
    pub position: WalPosition,
    pub record: WalRecord,
}

/// One record as stored: its position, type (a [`RecordType`] as u8) and
/// payload (CRC checked, not decoded).
#[derive(Debug)]
pub struct RawEntry<'a> {
    pub position: WalPosition,
    pub typ: u8,
    pub payload: &'a [u8],
}

/// Reads the WAL for one consumer.
///
/// It starts at the beginning of the segment holding the consumer's
/// checkpoint: records up to the checkpoint are skipped, except Series
/// records, which are yielded so that the consumer can resolve every ref
/// (each segment defines every series its samples use before they use it,
/// so a consumer may forget its ref table whenever `position.segment`
/// changes). Segments deleted before the reader reaches them (size/age
/// bounds) are skipped with a warning. Reading does blocking file IO on
/// data that was just written (normally in the page cache).
pub struct WalReader {
    inner: Arc<Inner>,
    name: String,
    start: WalPosition,
    segment: u64,
    offset: u64,
    file: Option<BufReader<File>>,
    /// The current segment has a corrupt record: skip the rest of it once
    /// it is closed.
    broken: bool,
    head: watch::Receiver<WalPosition>,
    payload: Vec<u8>,
}

enum Read1 {
    Record(u8, u64),
    End,
}

impl WalReader {
    pub(crate) fn new(inner: Arc<Inner>, name: &str, start: WalPosition) -> WalReader {
        let head = inner.head.subscribe();
        WalReader {
            inner,
            name: name.to_string(),
            start,
            segment: start.segment,
            offset: 0,
            file: None,
            broken: false,
            head,
            payload: Vec::new(),
        }
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The checkpoint this reader started from.
    pub fn start(&self) -> WalPosition {
        self.start
    }

    /// Persists that everything up to `pos` is delivered (see
    /// [`super::Wal::commit`]).
    pub fn commit(&self, pos: WalPosition) -> Result<(), WalError> {
        self.inner.commit(&self.name, pos)
    }

    /// The next record, waiting (without polling) for appends when at the
    /// end. Once the [`super::Wal`] is dropped, no more appends come and
    /// this waits forever; use it under a shutdown signal (`select!`).
    pub async fn next(&mut self) -> Result<WalEntry, WalError> {
        loop {
            if let Some(e) = self.try_next()? {
                return Ok(e);
            }
            if self.head.changed().await.is_err() {
                // The WAL is gone: nothing more will come.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The next record if one is available now.
    pub fn try_next(&mut self) -> Result<Option<WalEntry>, WalError> {
        loop {
            let Some((position, typ)) = self.next_frame()? else {
                return Ok(None);
            };
            match codec::decode_payload(typ, &self.payload) {
                Ok(record) => return Ok(Some(WalEntry { position, record })),
                Err(e) => {
                    tracing::warn!(consumer = %self.name, %position, error = %e, "WAL record with a valid CRC does not decode; skipping it");
                    continue;
                }
            }
        }
    }

    /// The next record if one is available now, not decoded: the same
    /// records as [`try_next`](Self::try_next) yields, except that one
    /// whose payload does not decode is not skipped here (the caller
    /// decodes, e.g. with [`codec::decode_payload`] or
    /// [`codec::visit_series_payload`]).
    pub fn try_next_raw(&mut self) -> Result<Option<RawEntry<'_>>, WalError> {
        Ok(self.next_frame()?.map(|(position, typ)| RawEntry {
            position,
            typ,
            payload: &self.payload,
        }))
    }

    /// Resolves when records may have been appended since the last
    /// `try_next*` call (immediately if they were). Once the
    /// [`super::Wal`] is dropped this waits forever.
    pub async fn appended(&mut self) {
        if self.head.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Reads the next record to yield into `self.payload`.
    fn next_frame(&mut self) -> Result<Option<(WalPosition, u8)>, WalError> {
        loop {
            let head = *self.head.borrow_and_update();
            if self.file.is_none() && !self.open_segment(head)? {
                return Ok(None);
            }
            let closed = self.segment < head.segment;
            if self.broken || (!closed && self.offset >= head.offset) {
                if closed {
                    self.next_segment();
                    continue;
                }
                return Ok(None);
            }
            match self.read_record(closed)? {
                Read1::End => {
                    self.next_segment();
                    continue;
                }
                Read1::Record(typ, end) => {
                    let position = WalPosition {
                        segment: self.segment,
                        offset: end,
                    };
                    if position <= self.start && typ != RecordType::Series as u8 {
                        continue;
                    }
                    return Ok(Some((position, typ)));
                }
            }
        }
    }

    fn next_segment(&mut self) {
        self.segment += 1;
        self.offset = 0;
        self.file = None;
        self.broken = false;
    }

    /// Opens the first segment at or after `self.segment` that exists.
    /// Returns false when there is none yet.
    fn open_segment(&mut self, head: WalPosition) -> Result<bool, WalError> {
        loop {
            if self.segment > head.segment {
                return Ok(false);
            }
            let st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(&n) = st.segments.range(self.segment..).next().map(|(k, _)| k) else {
                return Ok(false);
            };
            if n != self.segment {
                // Passing over the (delivered) segment of the checkpoint
                // itself is normal; anything else was dropped by a bound.
                if !(self.segment == self.start.segment && n == self.segment + 1) {
                    tracing::warn!(
                        consumer = %self.name,
                        wanted = self.segment,
                        resuming_at = n,
                        "WAL segments were deleted before this consumer read them (size/age bounds); skipping ahead"
                    );
                }
                self.segment = n;
            }
            let path = segment::segment_path(&self.inner.dir, n);
            let f = File::open(&path).map_err(|e| WalError::io("open segment", &path, e))?;
            drop(st);
            let mut r = BufReader::with_capacity(256 << 10, f);
            let mut magic = [0u8; SEGMENT_MAGIC.len()];
            if r.read_exact(&mut magic).is_err() || &magic != SEGMENT_MAGIC {
                tracing::warn!(consumer = %self.name, segment = %path.display(), "WAL segment has a bad header; skipping it");
                if n >= head.segment {
                    return Ok(false);
                }
                self.next_segment();
                continue;
            }
            self.offset = SEGMENT_HEADER_LEN;
            self.file = Some(r);
            return Ok(true);
        }
    }

    fn read_record(&mut self, closed: bool) -> Result<Read1, WalError> {
        let path = || segment::segment_path(&self.inner.dir, self.segment);
        let Some(r) = self.file.as_mut() else {
            return Ok(Read1::End);
        };
        let mut h = [0u8; FRAME_HEADER_LEN];
        let mut got = 0;
        while got < h.len() {
            match r.read(&mut h[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(WalError::io("read segment", &path(), e)),
            }
        }
        if got == 0 && closed {
            return Ok(Read1::End);
        }
        let problem = if got < h.len() {
            Some("torn frame header".to_string())
        } else {
            match codec::parse_frame_header(&h) {
                Err(e) => Some(e.to_string()),
                Ok(fh) => {
                    self.payload.resize(fh.len as usize, 0);
                    match r.read_exact(&mut self.payload) {
                        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                            Some("torn record".to_string())
                        }
                        Err(e) => return Err(WalError::io("read segment", &path(), e)),
                        Ok(()) => match codec::check_crc(&fh, &self.payload) {
                            Err(e) => Some(e.to_string()),
                            Ok(()) => {
                                self.offset += (FRAME_HEADER_LEN + self.payload.len()) as u64;
                                return Ok(Read1::Record(fh.typ, self.offset));
                            }
                        },
                    }
                }
            }
        };
        tracing::warn!(
            consumer = %self.name,
            segment = %path().display(),
            offset = self.offset,
            problem = problem.as_deref().unwrap_or(""),
            "WAL reader met a torn or corrupt record; skipping the rest of this segment"
        );
        self.broken = true;
        Ok(Read1::End)
    }
}
