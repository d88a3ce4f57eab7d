//! Reading chunks of lines, batching them into requests, sending them over the pipelined
//! producer and tallying the acks.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use shale_client::{ClientError, Header, ProduceAck, ProduceRequest, Producer, Record};
use tokio::time::Instant;

use super::ProduceArgs;
use super::outcome::{Ledger, Run, Span};
use crate::input::Chunk;
use crate::parse;

type PendingAck = Pin<Box<dyn Future<Output = (Span, Result<ProduceAck, ClientError>)> + Send>>;

/// Lines collected for the next request.
#[derive(Debug)]
struct Batch {
    first_line: u64,
    records: Vec<Record>,
    bytes: usize,
}

/// Reads chunks of lines, batches them, sends them and tallies the acks.
pub(super) struct Pump {
    topic: String,
    partition: Option<u32>,
    separator: Option<Vec<u8>>,
    headers: Vec<Header>,
    batch_records: usize,
    batch_bytes: usize,
    linger: Duration,
    max_in_flight: usize,
    producer: Producer,
}

impl Pump {
    pub(super) fn new(args: &ProduceArgs, producer: Producer) -> Self {
        Self {
            topic: args.topic.clone(),
            partition: args.partition,
            separator: args.key_separator.as_ref().map(|s| s.as_bytes().to_vec()),
            headers: args
                .headers
                .iter()
                .map(|(key, value)| Header::new(key.clone(), value.clone()))
                .collect(),
            batch_records: args.batch_records as usize,
            batch_bytes: usize::try_from(args.batch_bytes.as_u64()).unwrap_or(usize::MAX),
            linger: args.linger,
            max_in_flight: args.max_in_flight as usize,
            producer,
        }
    }

    pub(super) async fn run(
        self,
        mut lines: tokio::sync::mpsc::Receiver<std::io::Result<Chunk>>,
    ) -> Run {
        let mut acks: FuturesOrdered<PendingAck> = FuturesOrdered::new();
        let mut run = Run {
            ledger: Ledger::default(),
            cause: None,
            interrupted: false,
            first_unsent: 1,
            last_read: 0,
            input_done: false,
            in_flight: VecDeque::new(),
        };
        let mut batch = Batch {
            first_line: 1,
            records: Vec::new(),
            bytes: 0,
        };
        let mut deadline: Option<Instant> = None;
        let mut interrupt: Pin<Box<dyn Future<Output = ()> + Send>> =
            Box::pin(crate::cmd::shutdown_signal());
        loop {
            let reading = run.cause.is_none() && run.ledger.failed.is_empty() && !run.input_done;
            if !reading && acks.is_empty() {
                return run;
            }
            tokio::select! {
                biased;
                Some((span, result)) = acks.next(), if !acks.is_empty() => {
                    run.in_flight.pop_front();
                    match result {
                        Ok(ack) => run.ledger.written += ack.record_count(),
                        Err(error) => run.ledger.failed.push((span, error)),
                    }
                }
                // The first interrupt stops reading and waits for the acks of what was sent;
                // another one stops waiting.
                () = &mut interrupt => {
                    run.interrupted = true;
                    if !reading {
                        return run;
                    }
                    run.cause = Some("interrupted".to_owned());
                    self.flush(&mut batch, &mut acks, &mut run);
                    interrupt = Box::pin(crate::cmd::shutdown_signal());
                }
                chunk = lines.recv(), if reading && acks.len() < self.max_in_flight => {
                    match chunk {
                        Some(Ok(chunk)) => self.take_chunk(chunk, &mut batch, &mut acks, &mut run),
                        Some(Err(error)) => {
                            run.cause = Some(format!(
                                "reading stdin failed after line {}: {error}",
                                run.last_read
                            ));
                        }
                        None => run.input_done = true,
                    }
                    if run.cause.is_some() || run.input_done {
                        self.flush(&mut batch, &mut acks, &mut run);
                    } else if batch.records.is_empty() {
                        deadline = None;
                    } else if deadline.is_none() {
                        deadline = Some(Instant::now() + self.linger);
                    }
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if reading && deadline.is_some() => {
                    deadline = None;
                    self.flush(&mut batch, &mut acks, &mut run);
                }
            }
        }
    }

    /// Turns lines into records, sending each batch that fills up; stops at a bad line.
    fn take_chunk(
        &self,
        chunk: Chunk,
        batch: &mut Batch,
        acks: &mut FuturesOrdered<PendingAck>,
        run: &mut Run,
    ) {
        for (number, line) in (chunk.first_line..).zip(chunk.lines) {
            run.last_read = number;
            let Some(record) = line_record(line, self.separator.as_deref(), &self.headers) else {
                let separator =
                    String::from_utf8_lossy(self.separator.as_deref().unwrap_or_default());
                run.cause = Some(format!("line {number} has no key separator {separator:?}"));
                return;
            };
            if batch.records.is_empty() {
                batch.first_line = number;
            }
            batch.bytes += record.payload_len();
            batch.records.push(record);
            if batch.records.len() >= self.batch_records || batch.bytes >= self.batch_bytes {
                self.flush(batch, acks, run);
            }
        }
    }

    /// Sends the batch, if it holds anything.
    fn flush(&self, batch: &mut Batch, acks: &mut FuturesOrdered<PendingAck>, run: &mut Run) {
        if batch.records.is_empty() {
            return;
        }
        let records = std::mem::take(&mut batch.records);
        let span = Span {
            first: batch.first_line,
            last: batch.first_line + records.len() as u64 - 1,
        };
        batch.bytes = 0;
        run.first_unsent = span.last + 1;
        run.in_flight.push_back(span);
        let mut request = ProduceRequest::new(self.topic.clone(), records);
        if let Some(partition) = self.partition {
            request = request.with_partition(partition);
        }
        let ack = self.producer.send(request);
        acks.push_back(Box::pin(async move { (span, ack.await) }));
    }
}

/// The record for one input line, or `None` when a key separator is required but missing.
fn line_record(line: Vec<u8>, separator: Option<&[u8]>, headers: &[Header]) -> Option<Record> {
    let line = Bytes::from(line);
    let mut record = match separator {
        None => Record::new(line),
        Some(separator) => {
            let (key, _) = parse::split_key(&line, separator)?;
            let key_len = key.len();
            Record::new(line.slice(key_len + separator.len()..)).with_key(line.slice(..key_len))
        }
    };
    record.headers = headers.to_vec();
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_records_with_keys_and_headers() {
        let headers = [Header::new("src", "cli")];
        let record = line_record(b"user-1=hello=x".to_vec(), Some(b"="), &headers).unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"user-1"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"hello=x"[..]));
        assert_eq!(record.headers, headers);
        assert!(line_record(b"no separator".to_vec(), Some(b"="), &[]).is_none());
        let empty = line_record(Vec::new(), None, &[]).unwrap();
        assert_eq!(empty.value.as_deref(), Some(&b""[..]));
        assert_eq!(empty.key, None);
    }
}
