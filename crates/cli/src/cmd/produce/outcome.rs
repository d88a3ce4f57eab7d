//! What became of the lines: which were written, which were not, which may have been; and
//! the one-line message that says so when anything went wrong.

use std::collections::VecDeque;

use shale_client::ClientError;

use crate::parse::line_range;

/// The lines of one request: `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) first: u64,
    pub(super) last: u64,
}

/// What happened to the lines that were sent.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub(super) written: u64,
    /// Requests that failed, in line order.
    pub(super) failed: Vec<(Span, ClientError)>,
}

/// The outcome of reading and sending.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) ledger: Ledger,
    /// Why reading stopped early, if it did.
    pub(super) cause: Option<String>,
    pub(super) interrupted: bool,
    /// The first line never handed to the producer.
    pub(super) first_unsent: u64,
    /// The last line read.
    pub(super) last_read: u64,
    /// Whether stdin was read to its end.
    pub(super) input_done: bool,
    /// Requests sent and not answered, oldest first; non-empty at the end only when a second
    /// interrupt stopped the wait for their acks.
    pub(super) in_flight: VecDeque<Span>,
}

impl Run {
    /// `None` when every line was written; otherwise one line naming the cause and which lines
    /// were not, or may not have been, written.
    pub(super) fn failure_message(&self, topic: &str) -> Option<String> {
        let cause = self.cause.clone().or_else(|| {
            self.ledger
                .failed
                .first()
                .map(|(span, error)| failed_request(*span, error))
        })?;
        let mut not_written: Vec<(u64, Option<u64>)> = Vec::new();
        let mut uncertain: Vec<(u64, Option<u64>)> = Vec::new();
        for (span, error) in &self.ledger.failed {
            let list = if error.has_no_side_effects() {
                &mut not_written
            } else {
                &mut uncertain
            };
            list.push((span.first, Some(span.last)));
        }
        uncertain.extend(
            self.in_flight
                .iter()
                .map(|span| (span.first, Some(span.last))),
        );
        if !self.input_done {
            not_written.push((self.first_unsent, None));
        } else if self.first_unsent <= self.last_read {
            not_written.push((self.first_unsent, Some(self.last_read)));
        }
        let mut message = format!(
            "{cause}; {} written to topic {topic:?}",
            plural(self.ledger.written, "record")
        );
        if !uncertain.is_empty() {
            message.push_str("; may or may not have been written: ");
            message.push_str(&describe_lines(&uncertain));
        }
        if !not_written.is_empty() {
            message.push_str("; not written: ");
            message.push_str(&describe_lines(&not_written));
        }
        Some(message)
    }
}

fn failed_request(span: Span, error: &ClientError) -> String {
    format!(
        "producing {} failed: {error}",
        line_range(span.first, span.last)
    )
}

/// "lines 1-3, line 9 onward", merging ranges that touch.
fn describe_lines(spans: &[(u64, Option<u64>)]) -> String {
    let mut spans = spans.to_vec();
    spans.sort_unstable();
    let mut merged: Vec<(u64, Option<u64>)> = Vec::new();
    for (first, last) in spans {
        if let Some((_, previous)) = merged.last_mut() {
            match previous {
                // An open-ended range already covers everything after it.
                None => continue,
                Some(end) if first <= *end + 1 => {
                    let end = *end;
                    *previous = last.map(|last| last.max(end));
                    continue;
                }
                Some(_) => {}
            }
        }
        merged.push((first, last));
    }
    merged
        .iter()
        .map(|&(first, last)| match last {
            Some(last) => line_range(first, last),
            None => format!("line {first} onward"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use shale_client::Code;

    use super::*;

    fn run(cause: Option<&str>, failed: Vec<(Span, ClientError)>, written: u64) -> Run {
        Run {
            ledger: Ledger { written, failed },
            cause: cause.map(str::to_owned),
            interrupted: false,
            first_unsent: 5,
            last_read: 5,
            input_done: false,
            in_flight: VecDeque::new(),
        }
    }

    #[test]
    fn success_has_no_message() {
        let mut done = run(None, vec![], 4);
        done.input_done = true;
        done.first_unsent = 6;
        assert_eq!(done.failure_message("t"), None);
    }

    #[test]
    fn a_bad_line_says_what_was_written() {
        let message = run(Some("line 5 has no key separator \":\""), vec![], 4)
            .failure_message("t")
            .unwrap();
        assert_eq!(
            message,
            "line 5 has no key separator \":\"; 4 records written to topic \"t\"; not written: line 5 onward"
        );
    }

    #[test]
    fn rejected_and_ambiguous_requests_are_told_apart() {
        let rejected = ClientError::InvalidRequest("nope".into());
        let broken = ClientError::StreamBroken {
            addr: "http://a:1".into(),
            code: Code::Unavailable,
            reason: "reset".into(),
            sent: true,
        };
        let mut run = run(
            None,
            vec![
                (Span { first: 1, last: 2 }, rejected),
                (Span { first: 3, last: 4 }, broken),
            ],
            0,
        );
        run.input_done = true;
        let message = run.failure_message("t").unwrap();
        assert_eq!(
            message,
            "producing lines 1-2 failed: invalid request: nope; 0 records written to topic \"t\"; \
             may or may not have been written: lines 3-4; not written: lines 1-2, line 5"
        );
    }

    #[test]
    fn line_spans_merge() {
        assert_eq!(
            describe_lines(&[(4, None), (1, Some(3)), (7, Some(8))]),
            "line 1 onward"
        );
        assert_eq!(
            describe_lines(&[(1, Some(3)), (5, Some(5)), (6, None)]),
            "lines 1-3, line 5 onward"
        );
    }
}
