//! Writing records to stdout, and remembering how far each partition has been printed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use shale_client::StoredRecord;

use crate::output::{self, Format};

/// Writes records and remembers, per partition, the offset after the last one flushed.
pub(super) struct Printer<W: Write> {
    pub(super) out: W,
    pub(super) format: Format,
    pub(super) printed: u64,
    pub(super) max_records: Option<u64>,
    /// The next offset to read in each partition: committed as the group's position.
    pub(super) positions: BTreeMap<u32, i64>,
    /// Partitions printed from since the last commit.
    pub(super) dirty: BTreeSet<u32>,
}

impl<W: Write> Printer<W> {
    pub(super) fn is_full(&self) -> bool {
        self.max_records.is_some_and(|max| self.printed >= max)
    }

    /// Prints records up to `--max-records`, then flushes. `Ok(false)` when stdout's reader
    /// went away; positions then stay at what was flushed before.
    pub(super) fn print(&mut self, partition: u32, records: &[StoredRecord]) -> io::Result<bool> {
        let mut last = None;
        for record in records {
            if self.is_full() {
                break;
            }
            let written = match self.format {
                Format::Text => self
                    .out
                    .write_all(record.value.as_deref().unwrap_or_default())
                    .and_then(|()| self.out.write_all(b"\n")),
                Format::Json => writeln!(self.out, "{}", output::record_json(partition, record)),
            };
            if let Err(error) = written {
                return gone_or(error);
            }
            self.printed += 1;
            last = Some(record.offset);
        }
        if let Err(error) = self.out.flush() {
            return gone_or(error);
        }
        if let Some(last) = last {
            self.positions.insert(partition, last + 1);
            self.dirty.insert(partition);
        }
        Ok(true)
    }
}

fn gone_or(error: io::Error) -> io::Result<bool> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(false)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(offset: i64, value: &'static str) -> StoredRecord {
        StoredRecord {
            offset,
            timestamp_ms: 0,
            key: None,
            value: Some(Bytes::from_static(value.as_bytes())),
            headers: vec![],
        }
    }

    fn printer(max_records: Option<u64>) -> Printer<Vec<u8>> {
        Printer {
            out: Vec::new(),
            format: Format::Text,
            printed: 0,
            max_records,
            positions: BTreeMap::from([(0, 0), (1, 5)]),
            dirty: BTreeSet::new(),
        }
    }

    #[test]
    fn printing_advances_positions_to_after_the_last_record() {
        let mut printer = printer(None);
        assert!(printer.print(1, &[record(5, "a"), record(6, "b")]).unwrap());
        assert_eq!(printer.out, b"a\nb\n");
        assert_eq!(printer.positions[&1], 7);
        assert_eq!(printer.positions[&0], 0);
        assert_eq!(printer.dirty, BTreeSet::from([1]));
    }

    #[test]
    fn max_records_cuts_a_batch_short() {
        let mut printer = printer(Some(1));
        printer.print(0, &[record(0, "a"), record(1, "b")]).unwrap();
        assert_eq!(printer.out, b"a\n");
        assert_eq!(printer.positions[&0], 1);
        assert!(printer.is_full());
    }
}
