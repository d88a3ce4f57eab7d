use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::SharedRng;

/// A topic's permanent identity, 16 bytes like Kafka's topic UUID.
///
/// Names can be deleted and re-created; ids never repeat, so data of a deleted topic can never
/// be read back under a new topic of the same name. Shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TopicId(pub [u8; 16]);

/// A string that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic id {input:?}: expected 32 hex digits")]
pub struct ParseTopicIdError {
    input: String,
}

impl TopicId {
    /// A fresh random id (version-4 UUID layout).
    pub fn random(rng: &SharedRng) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({self})")
    }
}

impl FromStr for TopicId {
    type Err = ParseTopicIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = || ParseTopicIdError {
            input: input.to_owned(),
        };
        // Exactly the canonical form: 32 lowercase hex digits (from_str_radix alone would
        // also take a leading '+' or uppercase, which would not print back the same).
        if input.len() != 32
            || !input
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        {
            return Err(error());
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&input[2 * i..2 * i + 2], 16).map_err(|_| error())?;
        }
        Ok(Self(bytes))
    }
}

impl Serialize for TopicId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TopicId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeded_rng;

    #[test]
    fn display_and_parse_round_trip() {
        let rng = seeded_rng(1);
        for _ in 0..100 {
            let id = TopicId::random(&rng);
            assert_eq!(id.to_string().parse::<TopicId>(), Ok(id));
        }
    }

    #[test]
    fn rejects_bad_text() {
        // Found by the object_names fuzz target: a '+' inside a digit pair, and uppercase,
        // parsed but did not print back the same.
        for bad in [
            "",
            "zz",
            &"g".repeat(32),
            &"a".repeat(31),
            &"é".repeat(16),
            "+123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789abcdef",
        ] {
            assert!(bad.parse::<TopicId>().is_err(), "{bad:?}");
        }
    }
}
