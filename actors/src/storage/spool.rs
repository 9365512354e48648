//! A durable, append-only queue of records on local disk: where the storage
//! writer puts batches while the database is unreachable.
//!
//! Each record is framed as `magic (4) | length (4, LE) | CRC-32 of payload (4, LE)
//! | payload`, appended and `fsync`ed before `append` returns, so a record that was
//! acknowledged survives a crash or `SIGKILL`. On open the file is scanned: a torn
//! or corrupt tail (the record being written when the process died) is cut off;
//! everything before it is kept, in order.
//!
//! Records are handed back in order, either all at once ([`Spool::replay`]) or a
//! few at a time ([`Spool::peek`] then [`Spool::consume`], for a consumer that
//! awaits a database between the two). Consumed records are forgotten in memory
//! first and on disk when the spool empties (truncated) or the consumed prefix
//! grows large (the rest is rewritten to a new file that atomically replaces the
//! spool), so nothing unconsumed is ever lost. A crash before the disk catches
//! up replays some records twice, which the database's (sensor, timestamp)
//! deduplication absorbs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: [u8; 4] = *b"HWSP";
const HEADER: usize = 12;
/// Largest record accepted; anything claiming more is corruption.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

/// What opening an existing spool found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Intact records waiting for replay.
    pub records: u64,
    /// Bytes cut off the end (a torn or corrupt last write).
    pub truncated_bytes: u64,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E> {
    /// The consumer refused a record; it and the rest stay spooled.
    #[error("consumer failed after {replayed} records: {error}")]
    Consumer {
        /// Records consumed before the failure.
        replayed: u64,
        /// The consumer's error.
        error: E,
    },
    /// The spool file could not be read or rewritten.
    #[error("spool I/O: {0}")]
    Io(#[from] io::Error),
}

/// The spool file.
pub struct Spool {
    path: PathBuf,
    file: File,
    /// Bytes of intact records in the file.
    bytes: u64,
    /// Records in the file.
    records: u64,
    /// Byte offset of the first record not yet consumed.
    head: u64,
    /// Records before `head`.
    consumed: u64,
}

/// A consumed prefix this large is cut off the file rather than skipped.
const COMPACT_AT: u64 = 64 * 1024 * 1024;

impl Spool {
    /// Opens (or creates) the spool at `path`, cutting off a torn tail.
    pub fn open(path: impl AsRef<Path>) -> io::Result<(Spool, Recovery)> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir)?;
            }
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let len = file.metadata()?.len();
        let (records, good) = scan(&mut file, |_| {})?;
        let recovery = Recovery {
            records,
            truncated_bytes: len - good,
        };
        if good < len {
            file.set_len(good)?;
            file.sync_all()?;
        }
        Ok((
            Spool {
                path,
                file,
                bytes: good,
                records,
                head: 0,
                consumed: 0,
            },
            recovery,
        ))
    }

    /// Appends one record and makes it durable before returning.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        if payload.len() > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("record of {} bytes exceeds {MAX_RECORD}", payload.len()),
            ));
        }
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&MAGIC);
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        if let Err(err) = self
            .file
            .write_all(&frame)
            .and_then(|_| self.file.sync_data())
        {
            // Leave no half record behind for the next append to follow.
            let _ = self.file.set_len(self.bytes);
            return Err(err);
        }
        self.bytes += frame.len() as u64;
        self.records += 1;
        Ok(())
    }

    /// Bytes of records waiting (not yet consumed).
    pub fn bytes(&self) -> u64 {
        self.bytes - self.head
    }

    /// Records waiting.
    pub fn records(&self) -> u64 {
        self.records - self.consumed
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.records() == 0
    }

    /// The oldest waiting records, without consuming them: at most `max_records`,
    /// and no more than `max_bytes` of payload unless the first alone is larger.
    pub fn peek(&mut self, max_records: usize, max_bytes: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if self.is_empty() || max_records == 0 {
            return Ok(out);
        }
        self.file.seek(SeekFrom::Start(self.head))?;
        let mut reader = BufReader::new(&self.file).take(self.bytes - self.head);
        let mut total = 0usize;
        let mut header = [0u8; HEADER];
        while out.len() < max_records {
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if !out.is_empty() && total + len > max_bytes {
                break;
            }
            let mut payload = vec![0u8; len];
            reader.read_exact(&mut payload)?;
            total += len;
            out.push(payload);
        }
        Ok(out)
    }

    /// Consumes the `n` oldest waiting records (those [`Spool::peek`] returned and
    /// the consumer has made durable elsewhere).
    pub fn consume(&mut self, n: usize) -> io::Result<()> {
        let n = (n as u64).min(self.records());
        if n == 0 {
            return Ok(());
        }
        if n == self.records() {
            return self.clear();
        }
        self.file.seek(SeekFrom::Start(self.head))?;
        let mut reader = BufReader::new(&self.file);
        let mut header = [0u8; HEADER];
        let mut advanced = 0u64;
        for _ in 0..n {
            reader.read_exact(&mut header)?;
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as u64;
            reader.seek_relative(len as i64)?;
            advanced += HEADER as u64 + len;
        }
        self.head += advanced;
        self.consumed += n;
        if self.head >= COMPACT_AT && self.head * 2 >= self.bytes {
            self.keep_from(self.head)?;
        }
        Ok(())
    }

    /// Hands every record to `consume`, oldest first. All consumed: the spool is
    /// emptied. `consume` fails: the records from the failed one on are kept.
    pub fn replay<E>(
        &mut self,
        mut consume: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, ReplayError<E>> {
        let mut done = 0u64;
        let mut failed_at: Option<(u64, E)> = None;
        let mut offset = 0u64;
        let mut skip = self.consumed;
        scan(&mut self.file, |payload| {
            if skip > 0 {
                skip -= 1;
                offset += (HEADER + payload.len()) as u64;
                return;
            }
            if failed_at.is_none() {
                match consume(payload) {
                    Ok(()) => {
                        done += 1;
                        offset += (HEADER + payload.len()) as u64;
                    }
                    Err(e) => failed_at = Some((done, e)),
                }
            }
        })?;
        match failed_at {
            None => {
                self.clear()?;
                Ok(done)
            }
            Some((replayed, error)) => {
                self.keep_from(offset)?;
                Err(ReplayError::Consumer { replayed, error })
            }
        }
    }

    /// Empties the file: everything in it was consumed.
    fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.bytes = 0;
        self.records = 0;
        self.head = 0;
        self.consumed = 0;
        Ok(())
    }

    /// Replaces the spool with its records from byte `offset` on, atomically.
    fn keep_from(&mut self, offset: u64) -> io::Result<()> {
        if offset == 0 {
            return Ok(());
        }
        let tmp = self.path.with_extension("rewrite");
        {
            let mut src = BufReader::new(File::open(&self.path)?);
            src.seek(SeekFrom::Start(offset))?;
            let mut dst = BufWriter::new(File::create(&tmp)?);
            io::copy(&mut src.take(self.bytes - offset), &mut dst)?;
            dst.flush()?;
            dst.get_ref().sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) {
                let _ = d.sync_all();
            }
        }
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        let (records, good) = scan(&mut self.file, |_| {})?;
        self.records = records;
        self.bytes = good;
        self.head = 0;
        self.consumed = 0;
        Ok(())
    }
}

/// Reads intact records from the start, calling `each`; returns the number of
/// intact records and the byte length they span (the rest is a torn tail).
fn scan(file: &mut File, mut each: impl FnMut(&[u8])) -> io::Result<(u64, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&*file);
    let mut records = 0u64;
    let mut good = 0u64;
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if header[..4] != MAGIC || len > MAX_RECORD {
            break;
        }
        payload.resize(len, 0);
        match reader.read_exact(&mut payload) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        if crc32fast::hash(&payload) != crc {
            break;
        }
        each(&payload);
        records += 1;
        good += (HEADER + len) as u64;
    }
    Ok((records, good))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hydrowatch-spool-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("spool.bin")
    }

    fn collect(spool: &mut Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        spool
            .replay(|r| {
                out.push(r.to_vec());
                Ok::<(), ()>(())
            })
            .unwrap();
        out
    }

    #[test]
    fn records_survive_reopening_in_order() {
        let path = temp("order");
        {
            let (mut s, rec) = Spool::open(&path).unwrap();
            assert_eq!(rec, Recovery::default());
            for i in 0..100u32 {
                s.append(&i.to_le_bytes()).unwrap();
            }
            assert_eq!(s.records(), 100);
        }
        let (mut s, rec) = Spool::open(&path).unwrap();
        assert_eq!(rec.records, 100);
        let got = collect(&mut s);
        assert_eq!(got.len(), 100);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, r)| r == &(i as u32).to_le_bytes()));
        assert!(s.is_empty());
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_rest_kept() {
        let path = temp("torn");
        {
            let (mut s, _) = Spool::open(&path).unwrap();
            s.append(b"first").unwrap();
            s.append(b"second").unwrap();
        }
        // A crash in the middle of writing a third record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&MAGIC).unwrap();
        f.write_all(&100u32.to_le_bytes()).unwrap();
        f.write_all(b"part").unwrap();
        drop(f);
        let (mut s, rec) = Spool::open(&path).unwrap();
        assert_eq!(rec.records, 2);
        assert_eq!(rec.truncated_bytes, 12);
        s.append(b"third").unwrap();
        assert_eq!(
            collect(&mut s),
            vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
        );
    }

    #[test]
    fn a_corrupt_record_ends_the_intact_prefix() {
        let path = temp("corrupt");
        {
            let (mut s, _) = Spool::open(&path).unwrap();
            s.append(b"good").unwrap();
            s.append(b"flipped").unwrap();
        }
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        fs::write(&path, bytes).unwrap();
        let (mut s, rec) = Spool::open(&path).unwrap();
        assert_eq!(rec.records, 1);
        assert_eq!(collect(&mut s), vec![b"good".to_vec()]);
    }

    #[test]
    fn a_failing_consumer_keeps_what_it_did_not_take() {
        let path = temp("partial");
        let (mut s, _) = Spool::open(&path).unwrap();
        for r in [b"a", b"b", b"c", b"d"] {
            s.append(r).unwrap();
        }
        let mut seen = Vec::new();
        let err = s
            .replay(|r| {
                if r == b"c" {
                    return Err("database down");
                }
                seen.push(r.to_vec());
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(err, ReplayError::Consumer { replayed: 2, .. }));
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(s.records(), 2);
        // Still there after a restart, and appends go after them.
        drop(s);
        let (mut s, rec) = Spool::open(&path).unwrap();
        assert_eq!(rec.records, 2);
        s.append(b"e").unwrap();
        assert_eq!(
            collect(&mut s),
            vec![b"c".to_vec(), b"d".to_vec(), b"e".to_vec()]
        );
    }

    #[test]
    fn peek_and_consume_hand_out_records_a_few_at_a_time() {
        let path = temp("peek");
        let (mut s, _) = Spool::open(&path).unwrap();
        for i in 0..10u8 {
            s.append(&[i; 3]).unwrap();
        }
        let first = s.peek(4, usize::MAX).unwrap();
        assert_eq!(first, (0..4u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
        // Peeking again without consuming gives the same records.
        assert_eq!(s.peek(4, usize::MAX).unwrap(), first);
        s.consume(4).unwrap();
        assert_eq!(s.records(), 6);
        assert_eq!(s.bytes(), 6 * (HEADER as u64 + 3));
        // The byte limit stops early but always yields at least one record.
        assert_eq!(s.peek(10, 7).unwrap().len(), 2);
        assert_eq!(s.peek(10, 1).unwrap().len(), 1);
        s.append(&[99; 3]).unwrap();
        // Nothing consumed is forgotten on disk yet: a reopen replays it (the
        // database's deduplication absorbs that), and order holds.
        drop(s);
        let (mut s, rec) = Spool::open(&path).unwrap();
        assert_eq!(rec.records, 11);
        s.consume(4).unwrap();
        let rest = collect(&mut s);
        assert_eq!(rest.len(), 7);
        assert_eq!(rest[0], vec![4; 3]);
        assert_eq!(rest[6], vec![99; 3]);
        // Consuming everything empties the file.
        s.append(b"x").unwrap();
        assert_eq!(s.peek(5, usize::MAX).unwrap(), vec![b"x".to_vec()]);
        s.consume(1).unwrap();
        assert!(s.is_empty());
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }

    /// Re-runs this test binary as a child that appends and acknowledges records
    /// until it is killed with SIGKILL; every acknowledged record must be there.
    #[test]
    fn acknowledged_records_survive_sigkill() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};

        if let Ok(path) = std::env::var("HYDROWATCH_SPOOL_CHILD") {
            let (mut spool, _) = Spool::open(&path).unwrap();
            let mut out = io::stdout();
            for i in 0u64.. {
                spool.append(&i.to_le_bytes()).unwrap();
                writeln!(out, "acked {i}").unwrap();
                out.flush().unwrap();
            }
        }
        let path = temp("sigkill");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "storage::spool::tests::acknowledged_records_survive_sigkill",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HYDROWATCH_SPOOL_CHILD", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last_acked = None;
        while let Some(Ok(line)) = lines.next() {
            if let Some(n) = line
                .strip_prefix("acked ")
                .and_then(|n| n.parse::<u64>().ok())
            {
                last_acked = Some(n);
                if n >= 300 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let last_acked = last_acked.expect("child acknowledged records");
        let (mut spool, recovery) = Spool::open(&path).unwrap();
        assert!(
            recovery.records > last_acked,
            "{recovery:?} vs acked {last_acked}"
        );
        let got = collect(&mut spool);
        for (i, record) in got.iter().enumerate() {
            assert_eq!(record, &(i as u64).to_le_bytes(), "record {i} in order");
        }
    }
}
