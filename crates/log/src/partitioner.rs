//! Kafka's default partitioner, so a key lands on the partition a Kafka client would pick.

/// The seed Kafka's Java client passes to murmur2.
const KAFKA_MURMUR2_SEED: u32 = 0x9747_b28c;

/// Kafka's `Utils.murmur2` of `key`.
pub fn murmur2(key: &[u8]) -> i32 {
    murmur2::murmur2(key, KAFKA_MURMUR2_SEED) as i32
}

/// The partition Kafka's `BuiltInPartitioner.partitionForKey` picks:
/// `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    let positive = murmur2(key) & 0x7fff_ffff;
    (positive as u32) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's `UtilsTest.testMurmur2` (public test data of Apache Kafka).
    #[test]
    fn matches_kafka_murmur2_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn partition_is_in_range_and_stable() {
        for partitions in [1, 3, 12, 1000] {
            for key in [&b"user-1"[..], b"user-2", b"", b"\xff\x00"] {
                let partition = partition_for_key(key, partitions);
                assert!(partition < partitions);
                assert_eq!(partition, partition_for_key(key, partitions));
            }
        }
    }
}
