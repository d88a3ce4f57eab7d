//! The kinds of object-store request Shale distinguishes.
//!
//! One enum names them for metrics labels, tracing spans and fault injection, so the three
//! always agree and label cardinality stays bounded.

use std::fmt;

use object_store::GetOptions;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// One kind of object-store request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreOp {
    /// A single-request upload (`put_opts`), any [`object_store::PutMode`].
    Put,
    /// A GET of a whole object.
    Get,
    /// A GET of a byte range.
    GetRange,
    /// A HEAD (a GET with `head: true`).
    Head,
    /// A LIST (`list`, `list_with_offset`, `list_with_delimiter`).
    List,
    /// A delete of one object (bulk deletes count once per object).
    Delete,
    /// A server-side copy.
    Copy,
    /// A multipart request: initiate, upload part, complete or abort.
    Multipart,
}

impl StoreOp {
    /// Every op, for tests and for pre-creating metric series.
    pub const ALL: [StoreOp; 8] = [
        StoreOp::Put,
        StoreOp::Get,
        StoreOp::GetRange,
        StoreOp::Head,
        StoreOp::List,
        StoreOp::Delete,
        StoreOp::Copy,
        StoreOp::Multipart,
    ];

    /// The label value, e.g. `get_range`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::Put => "put",
            StoreOp::Get => "get",
            StoreOp::GetRange => "get_range",
            StoreOp::Head => "head",
            StoreOp::List => "list",
            StoreOp::Delete => "delete",
            StoreOp::Copy => "copy",
            StoreOp::Multipart => "multipart",
        }
    }

    /// Which op a `get_opts` call is: HEAD, ranged GET or whole GET.
    pub fn of_get(options: &GetOptions) -> StoreOp {
        if options.head {
            StoreOp::Head
        } else if options.range.is_some() {
            StoreOp::GetRange
        } else {
            StoreOp::Get
        }
    }
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for StoreOp {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_options_map_to_ops() {
        assert_eq!(StoreOp::of_get(&GetOptions::new()), StoreOp::Get);
        assert_eq!(
            StoreOp::of_get(&GetOptions::new().with_range(Some(0..10))),
            StoreOp::GetRange
        );
        assert_eq!(
            StoreOp::of_get(&GetOptions::new().with_head(true).with_range(Some(0..10))),
            StoreOp::Head
        );
    }

    #[test]
    fn label_values_are_distinct() {
        let mut names: Vec<_> = StoreOp::ALL.iter().map(|op| op.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), StoreOp::ALL.len());
    }
}
