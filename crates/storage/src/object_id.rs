//! Time-sortable unique object ids (ULID layout).
//!
//! 48 bits of milliseconds since the Unix epoch, then 80 random bits, written as 26 Crockford
//! base32 characters. Ids from different agents never collide (80 random bits per
//! millisecond), sort by creation time as plain strings, and give their creation time back,
//! which the garbage collector uses for grace periods. Time and randomness are injected.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use shale_common::{Clock, SharedRng};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_BITS: u32 = 80;
const TIMESTAMP_MAX: u64 = (1 << 48) - 1;

/// A ULID-style id: creation time (ms) plus randomness.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(u128);

/// A string that is not a 26-character Crockford base32 id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object id {input:?}: expected 26 Crockford base32 characters")]
pub struct ParseObjectIdError {
    input: String,
}

impl ObjectId {
    /// The length of the text form.
    pub const LEN: usize = 26;

    /// An id from its parts; `timestamp_ms` is truncated to 48 bits and `random` to 80.
    pub fn from_parts(timestamp_ms: u64, random: u128) -> Self {
        let random = random & ((1u128 << RANDOM_BITS) - 1);
        Self((u128::from(timestamp_ms & TIMESTAMP_MAX) << RANDOM_BITS) | random)
    }

    /// Milliseconds since the Unix epoch when the id was made.
    pub fn timestamp_ms(self) -> u64 {
        (self.0 >> RANDOM_BITS) as u64
    }

    /// The 128-bit value.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; ObjectId::LEN];
        for (i, slot) in text.iter_mut().enumerate() {
            let shift = 5 * (ObjectId::LEN - 1 - i);
            *slot = ALPHABET[((self.0 >> shift) & 0x1f) as usize];
        }
        // The alphabet is ASCII, so this cannot fail.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

impl FromStr for ObjectId {
    type Err = ParseObjectIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = || ParseObjectIdError {
            input: input.to_owned(),
        };
        if input.len() != ObjectId::LEN {
            return Err(error());
        }
        let mut value: u128 = 0;
        for (i, byte) in input.bytes().enumerate() {
            let digit = ALPHABET.iter().position(|c| *c == byte).ok_or_else(error)?;
            // 26 × 5 = 130 bits: the first character may only carry the top 3 bits.
            if i == 0 && digit > 7 {
                return Err(error());
            }
            value = (value << 5) | digit as u128;
        }
        Ok(Self(value))
    }
}

/// Makes ids that increase strictly within one generator, even within one millisecond or when
/// the wall clock steps back, so one agent's objects list in the order it made them.
#[derive(Debug, Clone)]
pub struct ObjectIdGenerator {
    clock: Arc<dyn Clock>,
    rng: SharedRng,
    last: Arc<Mutex<u128>>,
}

impl ObjectIdGenerator {
    /// A generator reading `clock` and `rng`.
    pub fn new(clock: Arc<dyn Clock>, rng: SharedRng) -> Self {
        Self {
            clock,
            rng,
            last: Arc::new(Mutex::new(0)),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> ObjectId {
        let now_ms = u64::try_from(self.clock.now_ms()).unwrap_or(0);
        let mut random = [0u8; 16];
        self.rng.fill(&mut random);
        let fresh = ObjectId::from_parts(now_ms, u128::from_le_bytes(random));
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let id = if fresh.0 > *last {
            fresh.0
        } else {
            // Same millisecond (or the clock stepped back): count up from the last id.
            last.wrapping_add(1)
        };
        *last = id;
        ObjectId(id)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use shale_common::{ManualClock, seeded_rng};

    use super::*;

    #[test]
    fn known_encoding() {
        let id = ObjectId::from_parts(0, 0);
        assert_eq!(id.to_string(), "00000000000000000000000000");
        let max = ObjectId(u128::MAX);
        assert_eq!(max.to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        assert_eq!(max.to_string().parse::<ObjectId>(), Ok(max));
        // 2016-07-30T23:54:10.259Z, the ULID spec's example time.
        let id = ObjectId::from_parts(1_469_922_850_259, 0);
        assert!(id.to_string().starts_with("01ARZ3NDEK"), "{id}");
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "0000000000000000000000000",
            "000000000000000000000000000",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "0000000000000000000000000U",
            "0000000000000000000000000a",
        ] {
            assert!(bad.parse::<ObjectId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generator_is_monotonic_and_time_sortable() {
        let clock = ManualClock::new(1_700_000_000_000);
        let generator = ObjectIdGenerator::new(Arc::new(clock.clone()), seeded_rng(9));
        let mut ids = Vec::new();
        for step in 0..50 {
            ids.push(generator.next_id());
            if step % 10 == 0 {
                clock.advance(std::time::Duration::from_millis(1));
            }
        }
        clock.set(1_600_000_000_000); // the wall clock steps back
        ids.push(generator.next_id());
        let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert_eq!(ids[0].timestamp_ms(), 1_700_000_000_000);
    }

    #[test]
    fn generators_on_different_agents_do_not_collide() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(42));
        let a = ObjectIdGenerator::new(Arc::clone(&clock), seeded_rng(1));
        let b = ObjectIdGenerator::new(clock, seeded_rng(2));
        assert_ne!(a.next_id(), b.next_id());
    }

    proptest! {
        #[test]
        fn text_round_trips(timestamp in 0u64..=TIMESTAMP_MAX, random: u128) {
            let id = ObjectId::from_parts(timestamp, random);
            let text = id.to_string();
            prop_assert_eq!(text.len(), ObjectId::LEN);
            prop_assert_eq!(text.parse::<ObjectId>(), Ok(id));
            prop_assert_eq!(id.timestamp_ms(), timestamp);
        }

        #[test]
        fn text_order_is_numeric_order(a: u128, b: u128) {
            let (a, b) = (ObjectId(a), ObjectId(b));
            prop_assert_eq!(a.cmp(&b), a.to_string().cmp(&b.to_string()));
        }
    }
}
