//! Content-addressed blobs, encrypted at rest in fixed-size chunks.
//!
//! A blob is addressed by the BLAKE3 hash of its plaintext and stored as
//! `CAIRNBLB (8) | version (1) | chunk size (u32 LE) | file nonce (16)` followed by chunks of
//! XChaCha20-Poly1305 ciphertext. Chunk *i* uses nonce `file nonce || i (u64 BE)` and AAD
//! `header || i || final flag`, so reordering, truncation and extension are all detected.
//! Ingest and read stream: memory stays at a few chunks whatever the blob size.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cairn_core::BlobId;

use crate::error::{Result, StoreError};
use crate::fsutil::sync_dir;
use crate::seal::{self, BlobKey, Key};

const MAGIC: &[u8; 8] = b"CAIRNBLB";
const VERSION: u8 = 1;
const HEADER: usize = 8 + 1 + 4 + 16;
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 1 << 20;
const TAG: usize = 16;

/// The blob directory of one workspace.
#[derive(Clone)]
pub struct BlobStore {
    dir: PathBuf,
    key: Key,
}

impl Drop for BlobStore {
    fn drop(&mut self) {
        // The chunk key opens every blob, as the blob key it derives from does.
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStore({})", self.dir.display())
    }
}

fn nonce(file_nonce: &[u8], i: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(file_nonce);
    n[16..].copy_from_slice(&i.to_be_bytes());
    XNonce::from(n)
}

fn aad(header: &[u8], i: u64, last: bool) -> Vec<u8> {
    let mut a = Vec::with_capacity(HEADER + 9);
    a.extend_from_slice(header);
    a.extend_from_slice(&i.to_be_bytes());
    a.push(last as u8);
    a
}

/// Writes a new file in aligned 4 MiB blocks, with `O_DIRECT` where the file system supports
/// it: the bytes go from this buffer to the disk without a copy into the page cache, which on
/// this class of machine is the slowest step of ingest. The tail is padded to a block and the
/// file then cut to its exact length. Where `O_DIRECT` is refused (tmpfs, say) the same blocks
/// go through the page cache.
struct DirectWriter {
    file: File,
    path: PathBuf,
    direct: bool,
    buf: Vec<u8>,
    start: usize,
    len: usize,
    total: u64,
}

const ALIGN: usize = 4096;
const STAGE: usize = 4 << 20;

impl DirectWriter {
    fn create(path: &Path, header: &[u8]) -> std::io::Result<DirectWriter> {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        let (file, direct) = match direct {
            Ok(f) => (f, true),
            Err(_) => (File::create(path)?, false),
        };
        let buf = vec![0u8; STAGE + ALIGN];
        // The aligned window inside the allocation (safe arithmetic on the address).
        let start = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
        let mut w = DirectWriter {
            file,
            path: path.to_path_buf(),
            direct,
            buf,
            start,
            len: 0,
            total: 0,
        };
        w.push(header)?;
        Ok(w)
    }

    fn push(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let n = (STAGE - self.len).min(data.len());
            let at = self.start + self.len;
            self.buf[at..at + n].copy_from_slice(&data[..n]);
            self.len += n;
            self.total += n as u64;
            data = &data[n..];
            if self.len == STAGE {
                self.write_stage(STAGE)?;
            }
        }
        Ok(())
    }

    /// Writes the first `n` (a multiple of ALIGN) staged bytes.
    fn write_stage(&mut self, n: usize) -> std::io::Result<()> {
        let block = &self.buf[self.start..self.start + n];
        match self.file.write_all(block) {
            Ok(()) => {}
            // Some file systems accept the flag at open and refuse the write: start again
            // through the page cache (nothing has been written yet in that case).
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct = false;
                self.file = File::create(&self.path)?;
                let written = self.total - self.len as u64;
                if written != 0 {
                    return Err(e);
                }
                self.file.write_all(block)?;
            }
            Err(e) => return Err(e),
        }
        self.len = 0;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<File> {
        if self.len > 0 {
            let padded = self.len.div_ceil(ALIGN) * ALIGN;
            let (s, l) = (self.start, self.len);
            self.buf[s + l..s + padded].fill(0);
            self.write_stage(padded)?;
            self.file.set_len(self.total)?;
        }
        Ok(self.file)
    }
}

/// Reads until `buf` is full or EOF; returns bytes read.
fn fill(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl BlobStore {
    /// Opens (creating if needed) the blob directory, removing temp files a crash left behind.
    pub fn open(dir: &Path, blob_key: &BlobKey) -> Result<BlobStore> {
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(StoreError::io(&tmp))?;
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(BlobStore {
            dir: dir.to_path_buf(),
            key: seal::subkey(blob_key.as_bytes(), "cairn blob chunks v1"),
        })
    }

    /// Where a blob lives.
    pub fn path(&self, id: &BlobId) -> PathBuf {
        let h = id.to_hex();
        self.dir.join(&h[..2]).join(&h)
    }

    /// Whether the blob is present.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.path(id).is_file()
    }

    /// Streams `src` into the store: hashes and encrypts in one pass, writes a temp file, fsyncs
    /// it and renames it into place. `progress` is called with bytes consumed so far.
    pub fn put(&self, mut src: impl Read, mut progress: impl FnMut(u64)) -> Result<(BlobId, u64)> {
        self.put_dyn(&mut src, &mut progress)
    }

    /// [`BlobStore::put`] without generics, so the hashing and encryption loop is compiled
    /// (and optimised) here rather than in whichever crate calls `put`.
    pub fn put_dyn(
        &self,
        src: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(BlobId, u64)> {
        self.put_checked(src, None, progress)
    }

    /// Streams a blob that must be `expected` (one asked of a peer) into the store. Content
    /// hashing to anything else is refused: only its own temp file is removed, and no stored
    /// blob (under either id) is touched. Returns the plaintext size.
    pub fn put_expected(
        &self,
        src: &mut dyn Read,
        expected: &BlobId,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        self.put_checked(src, Some(expected), progress)
            .map(|(_, n)| n)
    }

    fn put_checked(
        &self,
        src: &mut dyn Read,
        expected: Option<&BlobId>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(BlobId, u64)> {
        let tmp_path = self.dir.join("tmp").join(hex::encode(seal::random::<12>()));
        let res = self
            .put_inner(src, &tmp_path, progress)
            .and_then(|(id, n)| match expected {
                Some(want) if *want != id => Err(StoreError::BlobMismatch {
                    expected: want.to_hex(),
                    got: id.to_hex(),
                }),
                _ => self.install(&tmp_path, &id).map(|()| (id, n)),
            });
        if res.is_err() {
            let _ = fs::remove_file(&tmp_path);
        }
        res
    }

    fn put_inner(
        &self,
        src: &mut dyn Read,
        tmp_path: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(BlobId, u64)> {
        let file_nonce: [u8; 16] = seal::random();
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&(CHUNK as u32).to_le_bytes());
        header.extend_from_slice(&file_nonce);
        let file = DirectWriter::create(tmp_path, &header).map_err(StoreError::io(tmp_path))?;
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let mut hasher = blake3::Hasher::new();
        let mut total = 0u64;
        // Two stages on two cores: this thread reads, hashes and encrypts chunk i while the
        // writer thread writes chunk i-1. Buffers circulate (at most POOL), which bounds memory
        // and gives back-pressure when the disk is the slower side.
        const POOL: usize = 4;
        let (to_writer, from_main) = std::sync::mpsc::sync_channel::<Vec<u8>>(POOL);
        let (to_main, returned) = std::sync::mpsc::channel::<Vec<u8>>();
        let written = std::thread::scope(|s| -> Result<std::io::Result<File>> {
            let writer = s.spawn(move || -> std::io::Result<File> {
                let mut file = file;
                for buf in from_main {
                    file.push(&buf)?;
                    let _ = to_main.send(buf);
                }
                file.finish()
            });
            let mut made = 0;
            let mut take = || -> Option<Vec<u8>> {
                if made < POOL {
                    made += 1;
                    return Some(vec![0u8; CHUNK + TAG]);
                }
                returned.recv().ok()
            };
            let res = (|| -> Result<()> {
                let Some(mut cur) = take() else { return Ok(()) };
                cur.resize(CHUNK + TAG, 0);
                let mut n = fill(src, &mut cur[..CHUNK]).map_err(StoreError::io(tmp_path))?;
                let mut i = 0u64;
                loop {
                    let Some(mut next) = take() else {
                        return Ok(());
                    };
                    next.resize(CHUNK + TAG, 0);
                    let m = if n == CHUNK {
                        fill(src, &mut next[..CHUNK]).map_err(StoreError::io(tmp_path))?
                    } else {
                        0
                    };
                    let last = m == 0;
                    let chunk = &mut cur[..n];
                    hasher.update(chunk);
                    let tag: Tag = cipher
                        .encrypt_inout_detached(
                            &nonce(&file_nonce, i),
                            &aad(&header, i, last),
                            chunk.into(),
                        )
                        .map_err(|_| StoreError::Blob {
                            id: "(new)".into(),
                            reason: "encryption failed".into(),
                        })?;
                    cur.truncate(n);
                    cur.extend_from_slice(&tag);
                    if to_writer.send(cur).is_err() {
                        // The writer stopped on an error; joining it below reports it.
                        return Ok(());
                    }
                    total += n as u64;
                    progress(total);
                    if last {
                        return Ok(());
                    }
                    cur = next;
                    n = m;
                    i += 1;
                }
            })();
            drop(to_writer);
            let written = writer.join().map_err(|_| StoreError::Blob {
                id: "(new)".into(),
                reason: "the blob writer thread panicked".into(),
            })?;
            res.map(|()| written)
        })?;
        let file = written.map_err(StoreError::io(tmp_path))?;
        file.sync_all().map_err(StoreError::io(tmp_path))?;
        drop(file);
        Ok((BlobId(*hasher.finalize().as_bytes()), total))
    }

    /// Moves a written, fsynced temp file into place as blob `id` (dropping it if the blob is
    /// already there).
    fn install(&self, tmp_path: &Path, id: &BlobId) -> Result<()> {
        let dest = self.path(id);
        if dest.is_file() {
            fs::remove_file(tmp_path).map_err(StoreError::io(tmp_path))?;
        } else {
            let parent = dest.parent().unwrap_or(&self.dir);
            fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
            fs::rename(tmp_path, &dest).map_err(StoreError::io(&dest))?;
            sync_dir(parent).map_err(StoreError::io(parent))?;
        }
        Ok(())
    }

    /// Stores an in-memory buffer.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(BlobId, u64)> {
        self.put(bytes, |_| {})
    }

    /// Streams the verified plaintext of a blob into `dst`. Every chunk is authenticated before
    /// it is written; the whole-blob hash is checked at the end. Errors name the bad chunk.
    pub fn read_to(&self, id: &BlobId, dst: &mut impl Write) -> Result<u64> {
        self.read_to_dyn(id, dst)
    }

    /// [`BlobStore::read_to`] without generics (see [`BlobStore::put_dyn`]).
    pub fn read_to_dyn(&self, id: &BlobId, dst: &mut dyn Write) -> Result<u64> {
        let err = |reason: String| StoreError::Blob {
            id: id.to_hex(),
            reason,
        };
        let path = self.path(id);
        let mut f = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                err("missing from the blob store".into())
            } else {
                StoreError::Io {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        let len = f.metadata().map_err(StoreError::io(&path))?.len();
        let mut header = [0u8; HEADER];
        if fill(&mut f, &mut header).map_err(StoreError::io(&path))? != HEADER
            || &header[..8] != MAGIC
            || header[8] != VERSION
        {
            return Err(err("not a Cairn blob file (bad header)".into()));
        }
        let cs = u32::from_le_bytes([header[9], header[10], header[11], header[12]]) as usize;
        if cs == 0 || cs > 64 << 20 {
            return Err(err(format!("bad chunk size {cs}")));
        }
        let body = len - HEADER as u64;
        let per = (cs + TAG) as u64;
        let chunks = body.div_ceil(per).max(1);
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; cs + TAG];
        let mut total = 0u64;
        for i in 0..chunks {
            let last = i + 1 == chunks;
            let want = if last {
                (body - i * per) as usize
            } else {
                cs + TAG
            };
            let got = fill(&mut f, &mut buf[..want]).map_err(StoreError::io(&path))?;
            if got < TAG || got != want {
                return Err(err(format!(
                    "truncated at chunk {i} (offset {})",
                    i * cs as u64
                )));
            }
            let (data, tag) = buf[..got].split_at_mut(got - TAG);
            let tag = Tag::try_from(&*tag).map_err(|_| err(format!("chunk {i}: bad tag")))?;
            cipher
                .decrypt_inout_detached(
                    &nonce(&header[13..], i),
                    &aad(&header, i, last),
                    data.into(),
                    &tag,
                )
                .map_err(|_| {
                    err(format!(
                        "chunk {i} (plaintext offset {}) fails authentication{}",
                        i * cs as u64,
                        if last {
                            " — truncated or corrupt"
                        } else {
                            ""
                        }
                    ))
                })?;
            hasher.update(data);
            dst.write_all(data).map_err(StoreError::io(&path))?;
            total += data.len() as u64;
        }
        if BlobId(*hasher.finalize().as_bytes()) != *id {
            return Err(err("content does not match its hash".into()));
        }
        Ok(total)
    }

    /// Reads a whole blob into memory (for diffs of configuration files).
    pub fn read(&self, id: &BlobId) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.read_to(id, &mut v)?;
        Ok(v)
    }

    /// Verifies a blob without keeping its plaintext.
    pub fn verify(&self, id: &BlobId) -> Result<u64> {
        self.read_to(id, &mut std::io::sink())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_sizes_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path(), &BlobKey::from_bytes([5; 32])).unwrap();
        for size in [0usize, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 17] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let (id, n) = s.put_bytes(&data).unwrap();
            assert_eq!(n, size as u64);
            assert_eq!(id, BlobId::of(&data));
            assert_eq!(s.read(&id).unwrap(), data);
        }
        let data = vec![7u8; 2 * CHUNK + 5];
        let (id, _) = s.put_bytes(&data).unwrap();
        let p = s.path(&id);
        let good = fs::read(&p).unwrap();
        // Flip a byte in chunk 1.
        let mut bad = good.clone();
        bad[HEADER + CHUNK + TAG + 10] ^= 1;
        fs::write(&p, &bad).unwrap();
        let e = s.verify(&id).unwrap_err().to_string();
        assert!(e.contains("chunk 1"), "{e}");
        // Truncate at a chunk boundary: the new last chunk was not sealed as final.
        fs::write(&p, &good[..HEADER + 2 * (CHUNK + TAG)]).unwrap();
        assert!(s.verify(&id).is_err());
        fs::remove_file(&p).unwrap();
        assert!(s.verify(&id).unwrap_err().to_string().contains("missing"));
    }

    fn tmp_files(dir: &Path) -> usize {
        fs::read_dir(dir.join("tmp")).unwrap().count()
    }

    #[test]
    fn a_blob_arriving_with_another_blobs_bytes_cannot_delete_our_copy() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path(), &BlobKey::from_bytes([5; 32])).unwrap();
        let ours = b"<Tag A=1/>".as_slice();
        let (have, _) = s.put_bytes(ours).unwrap();
        let want = BlobId::of(b"<Tag A=2/>");
        // A peer asked for `want` sends the bytes of `have` (and, once, of nothing at all).
        for bytes in [ours, b"".as_slice()] {
            let e = s
                .put_expected(&mut &bytes[..], &want, &mut |_| {})
                .unwrap_err()
                .to_string();
            assert!(e.contains(&want.to_hex()) && e.contains("discarded"), "{e}");
            assert_eq!(s.read(&have).unwrap(), ours, "our copy is untouched");
            assert!(!s.contains(&want));
            assert_eq!(tmp_files(dir.path()), 0, "the incoming temp file is gone");
        }
        // The right bytes are stored; the same bytes again leave the stored copy as it was.
        let right = b"<Tag A=2/>".as_slice();
        assert_eq!(
            s.put_expected(&mut &right[..], &want, &mut |_| {}).unwrap(),
            10
        );
        let stored = fs::read(s.path(&want)).unwrap();
        assert_eq!(
            s.put_expected(&mut &right[..], &want, &mut |_| {}).unwrap(),
            10
        );
        assert_eq!(fs::read(s.path(&want)).unwrap(), stored);
        assert_eq!(s.read(&want).unwrap(), right);
        assert_eq!(tmp_files(dir.path()), 0);
    }

    #[test]
    fn plaintext_never_reaches_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path(), &BlobKey::from_bytes([5; 32])).unwrap();
        let (id, _) = s.put_bytes(b"MARKER-PUMP-STATION-7 config").unwrap();
        let raw = fs::read(s.path(&id)).unwrap();
        assert!(!raw.windows(8).any(|w| w == b"MARKER-P"));
    }
}
