//! Reading lines from stdin on a thread of its own, handed over in chunks.
//!
//! A chunk is sent whenever the next read would block (the buffer is drained) or the chunk is
//! big, so a fast pipe moves thousands of lines per channel message while a person typing sees
//! each line go out at once.

use std::io::{self, BufRead, BufReader, Read};

use tokio::sync::mpsc;

/// Lines as read, without their `\n`, numbered from 1.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// Number of the first line in `lines`.
    pub(crate) first_line: u64,
    pub(crate) lines: Vec<Vec<u8>>,
}

const READ_BUFFER: usize = 256 * 1024;
const CHUNK_LINES: usize = 4096;
const CHUNK_BYTES: usize = 1024 * 1024;

/// Starts reading `input` and returns the chunks as they come; the channel closes at end of
/// input or after an error. The thread stops when the receiver is dropped (at its next send).
pub(crate) fn spawn_line_reader<R: Read + Send + 'static>(
    input: R,
) -> mpsc::Receiver<io::Result<Chunk>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || read_lines(BufReader::with_capacity(READ_BUFFER, input), &tx));
    rx
}

fn read_lines<R: Read>(mut reader: BufReader<R>, tx: &mpsc::Sender<io::Result<Chunk>>) {
    let mut next_line: u64 = 1;
    let mut chunk = Chunk {
        first_line: next_line,
        lines: Vec::new(),
    };
    let mut chunk_bytes = 0;
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                chunk_bytes += line.len();
                chunk.lines.push(line);
                next_line += 1;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                if !chunk.lines.is_empty() && tx.blocking_send(Ok(chunk)).is_err() {
                    return;
                }
                let _ = tx.blocking_send(Err(error));
                return;
            }
        }
        if reader.buffer().is_empty()
            || chunk.lines.len() >= CHUNK_LINES
            || chunk_bytes >= CHUNK_BYTES
        {
            let full = std::mem::replace(
                &mut chunk,
                Chunk {
                    first_line: next_line,
                    lines: Vec::new(),
                },
            );
            chunk_bytes = 0;
            if tx.blocking_send(Ok(full)).is_err() {
                return;
            }
        }
    }
    if !chunk.lines.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all_lines(input: &'static [u8]) -> Vec<(u64, Vec<u8>)> {
        let mut rx = spawn_line_reader(input);
        let mut lines = Vec::new();
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk.unwrap();
            for (i, line) in chunk.lines.into_iter().enumerate() {
                lines.push((chunk.first_line + i as u64, line));
            }
        }
        lines
    }

    #[tokio::test]
    async fn lines_lose_only_their_newline() {
        let lines = all_lines(b"a\n\nb\r\nlast").await;
        assert_eq!(
            lines,
            vec![
                (1, b"a".to_vec()),
                (2, b"".to_vec()),
                (3, b"b\r".to_vec()),
                (4, b"last".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn empty_input_has_no_lines() {
        assert!(all_lines(b"").await.is_empty());
        assert_eq!(all_lines(b"\n").await, vec![(1, Vec::new())]);
    }
}
