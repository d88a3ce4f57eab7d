//! The one place that names objects.
//!
//! Paths are relative to the configured prefix (the store built by
//! [`crate::build_object_store`] adds it):
//!
//! ```text
//! segments/{id}.seg                                  multi-partition segments, as flushed
//! compacted/{topic_id}/{partition:010}/{id}.cseg     per-partition compacted objects (reserved)
//! index/{topic_id}/{partition:010}/{id}.idx          per-partition index objects (reserved)
//! _shale/probes/{id}                                 startup probes of the admin check
//! ```
//!
//! `{id}` is an [`ObjectId`]: time-sortable, unique across agents, and it gives back its
//! creation time for GC grace periods. Topic ids are 32 hex digits; partitions are zero-padded
//! to 10 digits so listings sort numerically. Every name has exactly one spelling: the parser
//! accepts only what the builders produce.

use std::fmt;

use object_store::path::Path;
use shale_common::TopicId;

use crate::object_id::ObjectId;

const SEGMENTS: &str = "segments";
const COMPACTED: &str = "compacted";
const INDEX: &str = "index";
const PROBES: &str = "_shale/probes";

/// The kinds of object Shale stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A sealed multi-partition segment.
    Segment,
    /// A compacted per-partition object.
    Compacted,
    /// An index object (offset → object map of one partition's history).
    Index,
}

impl ObjectKind {
    /// The top-level directory of this kind, for listing.
    pub fn prefix(self) -> Path {
        Path::from(self.directory())
    }

    fn directory(self) -> &'static str {
        match self {
            ObjectKind::Segment => SEGMENTS,
            ObjectKind::Compacted => COMPACTED,
            ObjectKind::Index => INDEX,
        }
    }

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ObjectKind::Segment => "seg",
            ObjectKind::Compacted => "cseg",
            ObjectKind::Index => "idx",
        }
    }
}

/// A parsed object name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectName {
    /// `segments/{id}.seg`
    Segment {
        /// The segment's id.
        id: ObjectId,
    },
    /// `compacted/{topic}/{partition}/{id}.cseg`
    Compacted {
        /// The topic.
        topic: TopicId,
        /// The partition.
        partition: u32,
        /// The object's id.
        id: ObjectId,
    },
    /// `index/{topic}/{partition}/{id}.idx`
    Index {
        /// The topic.
        topic: TopicId,
        /// The partition.
        partition: u32,
        /// The object's id.
        id: ObjectId,
    },
}

/// A path that is not a Shale object name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?} is not a shale object name: {reason}")]
pub struct ParseObjectNameError {
    path: String,
    reason: &'static str,
}

impl ObjectName {
    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            ObjectName::Segment { .. } => ObjectKind::Segment,
            ObjectName::Compacted { .. } => ObjectKind::Compacted,
            ObjectName::Index { .. } => ObjectKind::Index,
        }
    }

    /// The object's id.
    pub fn id(&self) -> ObjectId {
        match self {
            ObjectName::Segment { id }
            | ObjectName::Compacted { id, .. }
            | ObjectName::Index { id, .. } => *id,
        }
    }

    /// When the object's id was made (milliseconds since the epoch): an upper bound on when
    /// its upload started, for garbage-collection grace periods.
    pub fn created_at_ms(&self) -> u64 {
        self.id().timestamp_ms()
    }

    /// The object's path, relative to the store's prefix.
    pub fn path(&self) -> Path {
        Path::from(self.to_string())
    }

    /// Parses a path made by [`Self::path`].
    pub fn parse(path: &Path) -> Result<Self, ParseObjectNameError> {
        let text = path.as_ref();
        let error = |reason| ParseObjectNameError {
            path: text.to_owned(),
            reason,
        };
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [SEGMENTS, file] => Ok(ObjectName::Segment {
                id: parse_file(file, ObjectKind::Segment).map_err(error)?,
            }),
            [dir @ (COMPACTED | INDEX), topic, partition, file] => {
                let kind = if *dir == COMPACTED {
                    ObjectKind::Compacted
                } else {
                    ObjectKind::Index
                };
                let topic = parse_topic(topic).map_err(error)?;
                let partition = parse_partition(partition).map_err(error)?;
                let id = parse_file(file, kind).map_err(error)?;
                Ok(match kind {
                    ObjectKind::Compacted => ObjectName::Compacted {
                        topic,
                        partition,
                        id,
                    },
                    _ => ObjectName::Index {
                        topic,
                        partition,
                        id,
                    },
                })
            }
            _ => Err(error("unknown layout")),
        }
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        match self {
            ObjectName::Segment { id } => write!(f, "{SEGMENTS}/{id}.{}", kind.extension()),
            ObjectName::Compacted {
                topic,
                partition,
                id,
            }
            | ObjectName::Index {
                topic,
                partition,
                id,
            } => write!(
                f,
                "{}/{topic}/{partition:010}/{id}.{}",
                kind.directory(),
                kind.extension()
            ),
        }
    }
}

/// The path of segment `id`.
pub fn segment_path(id: ObjectId) -> Path {
    ObjectName::Segment { id }.path()
}

/// The directory holding one partition's objects of `kind` (compacted or index), for listing.
/// Segments hold many partitions, so for them this is just `segments`.
pub fn partition_prefix(kind: ObjectKind, topic: TopicId, partition: u32) -> Path {
    match kind {
        ObjectKind::Segment => kind.prefix(),
        ObjectKind::Compacted | ObjectKind::Index => {
            Path::from(format!("{}/{topic}/{partition:010}", kind.directory()))
        }
    }
}

/// The path of a startup probe object (see [`crate::StoreAdmin`]); never a data object.
pub fn probe_path(id: ObjectId) -> Path {
    Path::from(format!("{PROBES}/{id}"))
}

fn parse_file(file: &str, kind: ObjectKind) -> Result<ObjectId, &'static str> {
    let stem = file
        .strip_suffix(kind.extension())
        .and_then(|rest| rest.strip_suffix('.'))
        .ok_or("wrong file extension")?;
    stem.parse().map_err(|_| "invalid object id")
}

fn parse_topic(text: &str) -> Result<TopicId, &'static str> {
    // TopicId accepts upper-case hex too; the canonical spelling is lower-case.
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("topic id must be lower-case hex");
    }
    text.parse().map_err(|_| "invalid topic id")
}

fn parse_partition(text: &str) -> Result<u32, &'static str> {
    if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("partition must be 10 digits");
    }
    text.parse().map_err(|_| "partition out of range")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn topic() -> TopicId {
        TopicId([0xab; 16])
    }

    #[test]
    fn layout_is_as_documented() {
        let id = ObjectId::from_parts(1_700_000_000_000, 7);
        assert_eq!(
            segment_path(id).as_ref(),
            format!("segments/{id}.seg").as_str()
        );
        let compacted = ObjectName::Compacted {
            topic: topic(),
            partition: 3,
            id,
        };
        assert_eq!(
            compacted.path().as_ref(),
            format!("compacted/{}/0000000003/{id}.cseg", topic()).as_str()
        );
        let index = ObjectName::Index {
            topic: topic(),
            partition: u32::MAX,
            id,
        };
        assert_eq!(
            index.path().as_ref(),
            format!("index/{}/4294967295/{id}.idx", topic()).as_str()
        );
        assert_eq!(
            partition_prefix(ObjectKind::Index, topic(), 3).as_ref(),
            format!("index/{}/0000000003", topic()).as_str()
        );
        assert!(compacted.path().prefix_matches(&partition_prefix(
            ObjectKind::Compacted,
            topic(),
            3
        )));
        assert_eq!(
            probe_path(id).as_ref(),
            format!("_shale/probes/{id}").as_str()
        );
        assert_eq!(compacted.created_at_ms(), 1_700_000_000_000);
    }

    #[test]
    fn rejects_foreign_paths() {
        let id = ObjectId::from_parts(1, 2);
        let t = topic();
        for bad in [
            String::new(),
            "segments".to_owned(),
            format!("segments/{id}.cseg"),
            format!("segments/{id}"),
            format!("segments/{id}seg"),
            format!("segments/x/{id}.seg"),
            "segments/not-an-id.seg".to_owned(),
            format!("compacted/{t}/3/{id}.cseg"),
            format!("compacted/{t}/00000000003/{id}.cseg"),
            format!("compacted/{t}/9999999999/{id}.cseg"),
            format!(
                "compacted/{}/0000000003/{id}.cseg",
                t.to_string().to_uppercase()
            ),
            format!("compacted/xyz/0000000003/{id}.cseg"),
            format!("index/{t}/0000000003/{id}.cseg"),
            format!("_shale/probes/{id}"),
            format!("other/{id}.seg"),
        ] {
            let path = Path::from(bad.as_str());
            assert!(ObjectName::parse(&path).is_err(), "{bad:?} parsed");
        }
    }

    fn any_name() -> impl Strategy<Value = ObjectName> {
        let id = (0u64..(1 << 48), any::<u128>())
            .prop_map(|(timestamp, random)| ObjectId::from_parts(timestamp, random));
        let topic = any::<[u8; 16]>().prop_map(TopicId);
        prop_oneof![
            id.clone().prop_map(|id| ObjectName::Segment { id }),
            (topic.clone(), any::<u32>(), id.clone()).prop_map(|(topic, partition, id)| {
                ObjectName::Compacted {
                    topic,
                    partition,
                    id,
                }
            }),
            (topic, any::<u32>(), id).prop_map(|(topic, partition, id)| ObjectName::Index {
                topic,
                partition,
                id
            }),
        ]
    }

    proptest! {
        #[test]
        fn names_round_trip(name in any_name()) {
            let path = name.path();
            // The path survives object_store's own parsing unchanged (no escaping needed).
            prop_assert_eq!(Path::parse(path.as_ref()).unwrap(), path.clone());
            prop_assert_eq!(ObjectName::parse(&path), Ok(name));
        }
    }
}
