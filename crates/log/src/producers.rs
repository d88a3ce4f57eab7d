//! Idempotent producers: the per-partition sequence bookkeeping that turns a retried batch
//! into the offsets it already got instead of a duplicate (Kafka's rules).

use std::collections::BTreeMap;

use shale_meta::{ProducerBatch, ProducerState};

use crate::LogError;

/// Batches remembered per producer for duplicate detection (Kafka's in-flight limit).
pub(crate) const RECENT_BATCHES: usize = 5;

/// Producers remembered per partition; the least recently active are forgotten first.
pub(crate) const MAX_PRODUCERS_PER_PARTITION: usize = 1_000;

/// Producer keys one partition's commit writes at most, and deletes at most, so one
/// partition's metadata write per flush stays small: a segment holds batches of at most this
/// many idempotent producers per partition (a further producer waits for the next segment),
/// and up to as many expired or excess producers are deleted with it.
pub(crate) const MAX_PRODUCER_WRITES_PER_COMMIT: usize = 32;

/// The producer fields of one incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatchId {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
}

impl ProducerBatchId {
    /// The id of a batch of `records` records starting at `first_sequence`.
    pub(crate) fn new(producer_id: i64, epoch: i16, first_sequence: i32, records: i32) -> Self {
        Self {
            producer_id,
            epoch,
            first_sequence,
            last_sequence: add_sequence(first_sequence, records - 1),
        }
    }
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch already appended at these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Sequences wrap from `i32::MAX` to 0, as in Kafka.
pub(crate) fn add_sequence(sequence: i32, delta: i32) -> i32 {
    let wrapped = (i64::from(sequence) + i64::from(delta)) % (i64::from(i32::MAX) + 1);
    wrapped as i32
}

/// Decides whether `batch` is new, a duplicate, or refused.
pub(crate) fn check_sequence(
    producers: &BTreeMap<i64, ProducerState>,
    batch: ProducerBatchId,
    topic: &str,
    partition: u32,
) -> Result<SequenceCheck, LogError> {
    let Some(state) = producers.get(&batch.producer_id) else {
        return if batch.first_sequence == 0 {
            Ok(SequenceCheck::Append)
        } else {
            Err(LogError::UnknownProducer {
                topic: topic.to_owned(),
                partition,
                producer_id: batch.producer_id,
            })
        };
    };
    if batch.epoch < state.epoch {
        return Err(LogError::ProducerFenced {
            producer_id: batch.producer_id,
            epoch: batch.epoch,
            current: state.epoch,
        });
    }
    if batch.epoch > state.epoch {
        // A bumped epoch starts its sequences over.
        return if batch.first_sequence == 0 {
            Ok(SequenceCheck::Append)
        } else {
            Err(LogError::OutOfOrderSequence {
                producer_id: batch.producer_id,
                expected: 0,
                received: batch.first_sequence,
            })
        };
    }
    if let Some(seen) = state.recent.iter().find(|seen| {
        seen.first_sequence == batch.first_sequence && seen.last_sequence == batch.last_sequence
    }) {
        return Ok(SequenceCheck::Duplicate {
            base_offset: seen.base_offset,
            last_offset: seen.last_offset,
        });
    }
    if let Some(request) = &state.last_request
        && within(request, batch)
    {
        // One batch of a retried many-batch request: the request is answered as a whole.
        return Ok(SequenceCheck::Duplicate {
            base_offset: request.base_offset,
            last_offset: request.last_offset,
        });
    }
    let expected = add_sequence(state.last_sequence, 1);
    if batch.first_sequence == expected {
        Ok(SequenceCheck::Append)
    } else {
        Err(LogError::OutOfOrderSequence {
            producer_id: batch.producer_id,
            expected,
            received: batch.first_sequence,
        })
    }
}

/// Whether `batch`'s sequences lie inside `span` (sequences wrap, so distances are taken
/// from the span's first sequence).
fn within(span: &ProducerBatch, batch: ProducerBatchId) -> bool {
    let distance = |from: i32, to: i32| -> i64 {
        (i64::from(to) - i64::from(from)).rem_euclid(i64::from(i32::MAX) + 1)
    };
    let length = distance(span.first_sequence, span.last_sequence);
    distance(span.first_sequence, batch.first_sequence) <= length
        && distance(span.first_sequence, batch.last_sequence) <= length
        && distance(span.first_sequence, batch.first_sequence)
            <= distance(span.first_sequence, batch.last_sequence)
}

/// Records the span of a whole request (its first batch's first sequence to its last
/// batch's last sequence, and the offsets they got).
pub(crate) fn record_request(
    producers: &mut BTreeMap<i64, ProducerState>,
    producer_id: i64,
    span: ProducerBatch,
) {
    if let Some(state) = producers.get_mut(&producer_id) {
        state.last_request = Some(span);
    }
}

/// Records an appended batch; `now_ms` is the agent's clock.
pub(crate) fn record_batch(
    producers: &mut BTreeMap<i64, ProducerState>,
    batch: ProducerBatchId,
    base_offset: i64,
    last_offset: i64,
    now_ms: i64,
) {
    let state = producers
        .entry(batch.producer_id)
        .or_insert_with(|| ProducerState {
            epoch: batch.epoch,
            last_sequence: -1,
            last_offset: -1,
            last_active_ms: now_ms,
            recent: Vec::new(),
            last_request: None,
        });
    if batch.epoch != state.epoch {
        state.epoch = batch.epoch;
        state.recent.clear();
        state.last_request = None;
    }
    state.last_sequence = batch.last_sequence;
    state.last_offset = last_offset;
    state.last_active_ms = now_ms;
    state.recent.push(ProducerBatch {
        first_sequence: batch.first_sequence,
        last_sequence: batch.last_sequence,
        base_offset,
        last_offset,
    });
    if state.recent.len() > RECENT_BATCHES {
        let excess = state.recent.len() - RECENT_BATCHES;
        state.recent.drain(..excess);
    }
}

/// Producers to forget, at most `room` of them, never one in `keep`: first those idle
/// since before `now_ms - expiry_ms`, then, while more than
/// [`MAX_PRODUCERS_PER_PARTITION`] would remain, the least recently active. Times are the
/// agent's clock.
pub(crate) fn to_forget(
    producers: &BTreeMap<i64, ProducerState>,
    now_ms: i64,
    expiry_ms: i64,
    keep: &std::collections::HashSet<i64>,
    room: usize,
) -> Vec<i64> {
    // The common case on every commit: nothing idle, nothing over the cap. One pass, no
    // allocation, before sorting anything.
    let cutoff = now_ms.saturating_sub(expiry_ms);
    let new = keep.iter().filter(|id| !producers.contains_key(id)).count();
    if producers.len() + new <= MAX_PRODUCERS_PER_PARTITION
        && producers
            .iter()
            .all(|(id, state)| keep.contains(id) || state.last_active_ms >= cutoff)
    {
        return Vec::new();
    }
    let mut by_age: Vec<(i64, i64)> = producers
        .iter()
        .filter(|(id, _)| !keep.contains(id))
        .map(|(id, state)| (state.last_active_ms, *id))
        .collect();
    by_age.sort_unstable();
    let excess = (producers.len() + new).saturating_sub(MAX_PRODUCERS_PER_PARTITION);
    by_age
        .into_iter()
        .enumerate()
        .take_while(|(rank, (active, _))| *rank < excess || *active < cutoff)
        .map(|(_, (_, id))| id)
        .take(room)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i32, records: i32) -> ProducerBatchId {
        ProducerBatchId::new(7, 0, first, records)
    }

    #[test]
    fn new_producer_must_start_at_zero() {
        let producers = BTreeMap::new();
        assert_eq!(
            check_sequence(&producers, batch(0, 3), "t", 0),
            Ok(SequenceCheck::Append)
        );
        assert!(matches!(
            check_sequence(&producers, batch(5, 3), "t", 0),
            Err(LogError::UnknownProducer { .. })
        ));
    }

    #[test]
    fn retries_are_duplicates_and_gaps_are_refused() {
        let mut producers = BTreeMap::new();
        record_batch(&mut producers, batch(0, 3), 100, 102, 1);
        record_batch(&mut producers, batch(3, 2), 103, 104, 2);
        assert_eq!(
            check_sequence(&producers, batch(0, 3), "t", 0),
            Ok(SequenceCheck::Duplicate {
                base_offset: 100,
                last_offset: 102
            })
        );
        assert_eq!(
            check_sequence(&producers, batch(5, 1), "t", 0),
            Ok(SequenceCheck::Append)
        );
        assert_eq!(
            check_sequence(&producers, batch(9, 1), "t", 0),
            Err(LogError::OutOfOrderSequence {
                producer_id: 7,
                expected: 5,
                received: 9
            })
        );
    }

    #[test]
    fn older_epochs_are_fenced_and_new_epochs_restart() {
        let mut producers = BTreeMap::new();
        record_batch(&mut producers, ProducerBatchId::new(7, 2, 0, 1), 0, 0, 1);
        assert!(matches!(
            check_sequence(&producers, ProducerBatchId::new(7, 1, 1, 1), "t", 0),
            Err(LogError::ProducerFenced { current: 2, .. })
        ));
        assert_eq!(
            check_sequence(&producers, ProducerBatchId::new(7, 3, 0, 1), "t", 0),
            Ok(SequenceCheck::Append)
        );
        assert!(check_sequence(&producers, ProducerBatchId::new(7, 3, 4, 1), "t", 0).is_err());
    }

    #[test]
    fn only_recent_batches_are_remembered() {
        let mut producers = BTreeMap::new();
        for i in 0..10 {
            record_batch(&mut producers, batch(i, 1), i64::from(i), i64::from(i), 1);
        }
        assert_eq!(producers[&7].recent.len(), RECENT_BATCHES);
        assert!(matches!(
            check_sequence(&producers, batch(0, 1), "t", 0),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            check_sequence(&producers, batch(9, 1), "t", 0),
            Ok(SequenceCheck::Duplicate { base_offset: 9, .. })
        ));
    }

    #[test]
    fn a_retried_request_of_many_batches_is_a_duplicate_as_a_whole() {
        let mut producers = BTreeMap::new();
        for i in 0..20 {
            record_batch(
                &mut producers,
                batch(i * 10, 10),
                i64::from(i) * 10,
                i64::from(i) * 10 + 9,
                1,
            );
        }
        record_request(
            &mut producers,
            7,
            ProducerBatch {
                first_sequence: 0,
                last_sequence: 199,
                base_offset: 0,
                last_offset: 199,
            },
        );
        // Batches the recent list still holds answer with their own offsets; the request as a
        // whole merges them into the span.
        assert_eq!(
            check_sequence(&producers, batch(190, 10), "t", 0),
            Ok(SequenceCheck::Duplicate {
                base_offset: 190,
                last_offset: 199
            })
        );
        for first in [0, 50, 140] {
            assert_eq!(
                check_sequence(&producers, batch(first, 10), "t", 0),
                Ok(SequenceCheck::Duplicate {
                    base_offset: 0,
                    last_offset: 199
                }),
                "batch at sequence {first}"
            );
        }
        assert_eq!(
            check_sequence(&producers, batch(200, 1), "t", 0),
            Ok(SequenceCheck::Append)
        );
        assert!(check_sequence(&producers, batch(195, 10), "t", 0).is_err());
        let wrapped = ProducerBatch {
            first_sequence: i32::MAX - 4,
            last_sequence: 4,
            base_offset: 0,
            last_offset: 9,
        };
        assert!(within(
            &wrapped,
            ProducerBatchId::new(7, 0, i32::MAX - 1, 3)
        ));
        assert!(!within(&wrapped, ProducerBatchId::new(7, 0, 5, 1)));
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(ProducerBatchId::new(1, 0, i32::MAX - 1, 3).last_sequence, 0);
    }

    #[test]
    fn idle_and_excess_producers_are_forgotten_by_the_agents_clock() {
        let mut producers = BTreeMap::new();
        for id in 0..10 {
            record_batch(
                &mut producers,
                ProducerBatchId::new(id, 0, 0, 1),
                id,
                id,
                id * 100,
            );
        }
        let none = std::collections::HashSet::new();
        // Idle since before 1000 - 450 = 550: producers active at 0..=500.
        assert_eq!(
            to_forget(&producers, 1_000, 450, &none, 32),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            to_forget(&producers, 1_000, 450, &none, 2),
            [0, 1],
            "bounded by room"
        );
        let keep = std::collections::HashSet::from([0, 1]);
        assert_eq!(to_forget(&producers, 1_000, 450, &keep, 32), [2, 3, 4, 5]);
        // Over the cap: the least recently active go, even if not idle.
        let mut many = BTreeMap::new();
        for id in 0..=MAX_PRODUCERS_PER_PARTITION as i64 {
            record_batch(
                &mut many,
                ProducerBatchId::new(id, 0, 0, 1),
                id,
                id,
                5_000 + id,
            );
        }
        assert_eq!(to_forget(&many, 6_000, 1_000_000, &none, 32), [0]);
    }
}
