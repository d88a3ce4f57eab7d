//! Offset lookups and consumer-group offsets.

use shale_proto::v1;

/// Which offset of a partition to resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset still stored.
    Earliest,
    /// The high watermark: the offset the next record will get.
    Latest,
    /// The first offset whose record timestamp is at or after this time (ms since the epoch).
    Timestamp(i64),
}

impl From<OffsetSpec> for v1::list_offsets_request::Spec {
    fn from(spec: OffsetSpec) -> Self {
        match spec {
            OffsetSpec::Earliest => Self::Earliest(v1::Earliest {}),
            OffsetSpec::Latest => Self::Latest(v1::Latest {}),
            OffsetSpec::Timestamp(ms) => Self::TimestampMs(ms),
        }
    }
}

/// A resolved offset of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffset {
    pub partition: u32,
    /// `None` when no record matches a timestamp lookup.
    pub offset: Option<i64>,
    /// For a timestamp lookup: the timestamp of the record found.
    pub timestamp_ms: Option<i64>,
}

impl From<v1::PartitionOffset> for PartitionOffset {
    fn from(offset: v1::PartitionOffset) -> Self {
        Self {
            partition: offset.partition,
            offset: offset.offset,
            timestamp_ms: offset.timestamp_ms,
        }
    }
}

/// A consumer group's position in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub partition: u32,
    /// The next offset the group will consume (Kafka's convention).
    pub offset: i64,
    /// Free-form text stored with the offset.
    pub metadata: String,
}

impl GroupOffset {
    pub fn new(partition: u32, offset: i64) -> Self {
        Self {
            partition,
            offset,
            metadata: String::new(),
        }
    }
}

impl From<v1::GroupOffset> for GroupOffset {
    fn from(offset: v1::GroupOffset) -> Self {
        Self {
            partition: offset.partition,
            offset: offset.offset,
            metadata: offset.metadata,
        }
    }
}

impl From<GroupOffset> for v1::GroupOffset {
    fn from(offset: GroupOffset) -> Self {
        Self {
            partition: offset.partition,
            offset: offset.offset,
            metadata: offset.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_map_to_the_wire_oneof() {
        assert_eq!(
            v1::list_offsets_request::Spec::from(OffsetSpec::Timestamp(12)),
            v1::list_offsets_request::Spec::TimestampMs(12)
        );
        assert!(matches!(
            v1::list_offsets_request::Spec::from(OffsetSpec::Earliest),
            v1::list_offsets_request::Spec::Earliest(_)
        ));
    }

    #[test]
    fn group_offsets_round_trip() {
        let offset = GroupOffset::new(3, 99);
        assert_eq!(
            GroupOffset::from(v1::GroupOffset::from(offset.clone())),
            offset
        );
    }
}
