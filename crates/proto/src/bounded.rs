//! The codec of every generated service: prost, plus count limits checked on the wire bytes
//! before a request is materialised.
//!
//! Decoding allocates per element: an empty `Record` is 2 bytes on the wire and about 100
//! bytes decoded, so a 64 MiB request of empty records would become gigabytes of heap before
//! any handler could look at it. The limits below are checked by walking the message's wire
//! format (no allocation) first; a request over them is refused with `INVALID_ARGUMENT`.

use std::any::TypeId;
use std::marker::PhantomData;

use bytes::Buf;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;

use crate::v1;

/// Records one produce request may carry (`ProduceRequest.records`).
pub const MAX_RECORDS_PER_REQUEST: usize = 100_000;
/// Headers one produce request may carry, over all its records.
pub const MAX_HEADERS_PER_REQUEST: usize = 100_000;
/// Partitions one `ListOffsets` or `FetchOffsets` request may name.
pub const MAX_PARTITIONS_PER_REQUEST: usize = 10_000;
/// Offsets one `CommitOffsets` request may carry.
pub const MAX_OFFSETS_PER_COMMIT: usize = 10_000;
/// Topics one `JoinGroup` request may subscribe to.
pub const MAX_TOPICS_PER_JOIN: usize = 1_000;
/// Assignors one `JoinGroup` request may offer.
pub const MAX_ASSIGNORS_PER_JOIN: usize = 16;

/// [`tonic_prost::ProstCodec`] with the count limits of this module on decode.
#[derive(Debug)]
pub struct BoundedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ReservingEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ReservingEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder(ProstDecoder::new(BufferSettings::default()))
    }
}

/// prost's encoding into room reserved for the whole message first. tonic's buffer starts
/// at 8 KiB and prost writes field by field, so a 1 MiB fetch answer grew it by doubling:
/// reallocations that copied the answer again, a sixth of the agent's CPU on consume.
#[derive(Debug)]
pub struct ReservingEncoder<T>(PhantomData<T>);

impl<T: prost::Message> Encoder for ReservingEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|error| Status::internal(format!("encoding a message: {error}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Checks the limits, then decodes with prost.
#[derive(Debug)]
pub struct BoundedDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default + 'static> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The message is one contiguous buffer; if it ever were not, prost still decodes it
        // and the engine's own checks apply.
        if buf.chunk().len() == buf.remaining() {
            check::<U>(buf.chunk())?;
        }
        self.0.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// The limits for a message of type `U` (only requests have any).
pub fn check<U: 'static>(bytes: &[u8]) -> Result<(), Status> {
    let id = TypeId::of::<U>();
    if id == TypeId::of::<v1::ProduceRequest>() {
        check_produce(bytes)
    } else if id == TypeId::of::<v1::ProduceStreamRequest>() {
        // prost merges repeated occurrences of the field into one request: count them all.
        let mut total = ProduceCounts::default();
        for (field, value) in fields(bytes) {
            if let (2, Wire::Bytes(request)) = (field, value) {
                total.add(&count_produce(request)?);
            }
        }
        check_counts(&total, bytes.len())
    } else if id == TypeId::of::<v1::ListOffsetsRequest>() {
        limit(
            count_scalars(bytes, 2),
            MAX_PARTITIONS_PER_REQUEST,
            "partitions",
            "list offsets request",
        )
    } else if id == TypeId::of::<v1::FetchOffsetsRequest>() {
        limit(
            count_scalars(bytes, 3),
            MAX_PARTITIONS_PER_REQUEST,
            "partitions",
            "fetch offsets request",
        )
    } else if id == TypeId::of::<v1::JoinGroupRequest>() {
        let count = |wanted: u32| fields(bytes).filter(|(field, _)| *field == wanted).count();
        limit(
            count(3),
            MAX_TOPICS_PER_JOIN,
            "topics",
            "join group request",
        )?;
        limit(
            count(4),
            MAX_ASSIGNORS_PER_JOIN,
            "assignors",
            "join group request",
        )
    } else if id == TypeId::of::<v1::CommitOffsetsRequest>() {
        let offsets = fields(bytes).filter(|(field, _)| *field == 3).count();
        limit(
            offsets,
            MAX_OFFSETS_PER_COMMIT,
            "offsets",
            "commit offsets request",
        )
    } else {
        Ok(())
    }
}

/// Bytes a produce request may carry besides its `record_batches`: its topic name and a few
/// scalars need far less.
pub const MAX_BYTES_BESIDES_BATCHES: usize = 64 * 1024;

fn check_produce(bytes: &[u8]) -> Result<(), Status> {
    check_counts(&count_produce(bytes)?, bytes.len())
}

/// What the limits look at in one produce request (or all of a stream message's).
#[derive(Debug, Default)]
struct ProduceCounts {
    records: usize,
    headers: usize,
    /// Occurrences of `record_batches`, and their bytes.
    batch_fields: usize,
    batch_bytes: usize,
}

impl ProduceCounts {
    fn add(&mut self, other: &ProduceCounts) {
        self.records += other.records;
        self.headers += other.headers;
        self.batch_fields += other.batch_fields;
        self.batch_bytes += other.batch_bytes;
    }
}

/// Checks the counts of a produce message that is `wire_len` bytes long.
///
/// The engine keeps `record_batches` as a slice of the request's buffer until the batches
/// are in a segment, and that slice keeps the whole buffer alive; its buffer space is
/// counted by the batches' length. So a message must be mostly its batches: prost would drop
/// unknown fields and all but the last occurrence of the field, and megabytes of them would
/// be held while only bytes were counted.
fn check_counts(counts: &ProduceCounts, wire_len: usize) -> Result<(), Status> {
    limit(
        counts.records,
        MAX_RECORDS_PER_REQUEST,
        "records",
        "produce request",
    )?;
    limit(
        counts.headers,
        MAX_HEADERS_PER_REQUEST,
        "record headers",
        "produce request",
    )?;
    if counts.batch_fields > 1 {
        return Err(Status::invalid_argument(
            "record_batches appears more than once in the request; send all batches in one field",
        ));
    }
    if counts.batch_fields == 1 {
        let besides = wire_len.saturating_sub(counts.batch_bytes);
        if besides > MAX_BYTES_BESIDES_BATCHES {
            return Err(Status::invalid_argument(format!(
                "a produce request with record_batches may carry at most {MAX_BYTES_BESIDES_BATCHES} other bytes; this one carries {besides} (unknown fields?)"
            )));
        }
    }
    Ok(())
}

/// Records, headers and `record_batches` of one produce request's bytes. Refuses protobuf
/// groups (wire types 3 and 4), which prost skips silently and a scan would otherwise stop
/// at, so nothing can hide records behind one.
fn count_produce(bytes: &[u8]) -> Result<ProduceCounts, Status> {
    let mut counts = ProduceCounts::default();
    refuse_groups(bytes)?;
    for (field, value) in fields(bytes) {
        match (field, value) {
            (7, Wire::Bytes(batches)) => {
                counts.batch_fields += 1;
                counts.batch_bytes += batches.len();
            }
            (3, value) => {
                counts.records += 1;
                if let Wire::Bytes(record) = value {
                    refuse_groups(record)?;
                    counts.headers += fields(record).filter(|(field, _)| *field == 3).count();
                }
            }
            _ => {}
        }
        if counts.records > MAX_RECORDS_PER_REQUEST || counts.headers > MAX_HEADERS_PER_REQUEST {
            break;
        }
    }
    Ok(counts)
}

/// Fails if the top-level fields of `bytes` hold a group (the scan would stop at it).
fn refuse_groups(bytes: &[u8]) -> Result<(), Status> {
    let mut rest = bytes;
    while let Some(tag) = varint(&mut rest) {
        let next = match tag & 7 {
            0 => varint(&mut rest).map(|_| rest),
            1 => rest.get(8..),
            2 => varint(&mut rest)
                .and_then(|len| usize::try_from(len).ok())
                .and_then(|len| rest.get(len..)),
            5 => rest.get(4..),
            3 | 4 => {
                return Err(Status::invalid_argument(
                    "protobuf groups (wire types 3 and 4) are not accepted",
                ));
            }
            _ => None,
        };
        match next {
            Some(after) => rest = after,
            None => return Ok(()),
        }
    }
    Ok(())
}

fn limit(count: usize, max: usize, what: &str, request: &str) -> Result<(), Status> {
    if count > max {
        return Err(Status::invalid_argument(format!(
            "a {request} may carry at most {max} {what}; this one carries more"
        )));
    }
    Ok(())
}

/// Elements of a repeated scalar field, packed or not.
fn count_scalars(bytes: &[u8], wanted: u32) -> usize {
    fields(bytes)
        .filter(|(field, _)| *field == wanted)
        .map(|(_, value)| match value {
            // Packed: one varint per byte without the continuation bit.
            Wire::Bytes(packed) => packed.iter().filter(|byte| **byte < 0x80).count(),
            Wire::Scalar => 1,
        })
        .sum()
}

/// One field's value as far as counting needs.
enum Wire<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

/// The top-level fields of a message, in order. Stops at the first malformed byte: prost
/// reports that properly when it decodes.
fn fields(bytes: &[u8]) -> impl Iterator<Item = (u32, Wire<'_>)> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let tag = varint(&mut rest)?;
        let field = u32::try_from(tag >> 3).ok()?;
        let value = match tag & 7 {
            0 => {
                varint(&mut rest)?;
                Wire::Scalar
            }
            1 => {
                rest = rest.get(8..)?;
                Wire::Scalar
            }
            2 => {
                let len = usize::try_from(varint(&mut rest)?).ok()?;
                let (value, after) = (rest.get(..len)?, rest.get(len..)?);
                rest = after;
                Wire::Bytes(value)
            }
            5 => {
                rest = rest.get(4..)?;
                Wire::Scalar
            }
            _ => return None,
        };
        Some((field, value))
    })
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn produce(records: usize, headers_each: usize) -> Vec<u8> {
        v1::ProduceRequest {
            topic: "t".into(),
            records: (0..records)
                .map(|_| v1::Record {
                    headers: (0..headers_each).map(|_| v1::Header::default()).collect(),
                    ..v1::Record::default()
                })
                .collect(),
            ..v1::ProduceRequest::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn produce_counts_are_checked_before_decoding() {
        assert!(check::<v1::ProduceRequest>(&produce(MAX_RECORDS_PER_REQUEST, 0)).is_ok());
        let error =
            check::<v1::ProduceRequest>(&produce(MAX_RECORDS_PER_REQUEST + 1, 0)).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(
            error.message().contains("100000 records"),
            "{}",
            error.message()
        );
        let error = check::<v1::ProduceRequest>(&produce(20_000, 6)).unwrap_err();
        assert!(error.message().contains("headers"), "{}", error.message());
        let streamed = v1::ProduceStreamRequest {
            request_id: 1,
            request: Some(
                v1::ProduceRequest::decode(produce(MAX_RECORDS_PER_REQUEST + 1, 0).as_slice())
                    .unwrap(),
            ),
        }
        .encode_to_vec();
        assert!(check::<v1::ProduceStreamRequest>(&streamed).is_err());
        // Other messages pass untouched.
        assert!(check::<v1::ProduceResponse>(&produce(MAX_RECORDS_PER_REQUEST + 1, 0)).is_ok());
    }

    #[test]
    fn partition_and_offset_lists_are_bounded() {
        let list = |n: u32| {
            v1::ListOffsetsRequest {
                topic: "t".into(),
                partitions: (0..n).collect(),
                ..v1::ListOffsetsRequest::default()
            }
            .encode_to_vec()
        };
        assert!(check::<v1::ListOffsetsRequest>(&list(10_000)).is_ok());
        assert!(check::<v1::ListOffsetsRequest>(&list(10_001)).is_err());
        let fetch = v1::FetchOffsetsRequest {
            group: "g".into(),
            topic: "t".into(),
            partitions: (0..10_001).collect(),
        }
        .encode_to_vec();
        assert!(check::<v1::FetchOffsetsRequest>(&fetch).is_err());
        let commit = v1::CommitOffsetsRequest {
            group: "g".into(),
            topic: "t".into(),
            offsets: vec![v1::GroupOffset::default(); 10_001],
            ..Default::default()
        }
        .encode_to_vec();
        assert!(check::<v1::CommitOffsetsRequest>(&commit).is_err());
        let join = |topics: usize, assignors: usize| {
            v1::JoinGroupRequest {
                group: "g".into(),
                topics: vec![String::new(); topics],
                assignors: vec![String::new(); assignors],
                ..Default::default()
            }
            .encode_to_vec()
        };
        assert!(check::<v1::JoinGroupRequest>(&join(1_000, 16)).is_ok());
        assert!(check::<v1::JoinGroupRequest>(&join(1_001, 1)).is_err());
        assert!(check::<v1::JoinGroupRequest>(&join(1, 17)).is_err());
    }

    /// Found in review: a group before the records hid them from the scan, and records split
    /// over several occurrences of a stream message's request field each passed alone.
    #[test]
    fn groups_and_split_requests_do_not_hide_records() {
        let mut hidden = vec![0x0b, 0x0c]; // field 1: start group, end group
        hidden.extend(produce(MAX_RECORDS_PER_REQUEST + 1, 0));
        let error = check::<v1::ProduceRequest>(&hidden).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        let half = produce(MAX_RECORDS_PER_REQUEST / 2 + 1, 0);
        let mut stream = Vec::new();
        for _ in 0..2 {
            stream.push(0x12); // field 2, length-delimited
            let mut len = half.len();
            while len >= 0x80 {
                stream.push((len as u8) | 0x80);
                len >>= 7;
            }
            stream.push(len as u8);
            stream.extend_from_slice(&half);
        }
        let merged = v1::ProduceStreamRequest::decode(stream.as_slice()).unwrap();
        assert_eq!(
            merged.request.unwrap().records.len(),
            MAX_RECORDS_PER_REQUEST + 2,
            "prost merges the occurrences"
        );
        assert!(check::<v1::ProduceStreamRequest>(&stream).is_err());
    }

    /// Found in review: the engine keeps `record_batches` as a slice of the request buffer,
    /// so a few bytes of batches beside megabytes of unknown fields (or of an earlier
    /// occurrence of the field, which prost drops) would pin megabytes counted as bytes.
    #[test]
    fn batches_must_be_most_of_a_produce_request() {
        let with_batches = |batches: usize| v1::ProduceRequest {
            topic: "t".into(),
            partition: Some(0),
            record_batches: vec![7u8; batches].into(),
            ..v1::ProduceRequest::default()
        };
        let plain = with_batches(1 << 20).encode_to_vec();
        assert!(check::<v1::ProduceRequest>(&plain).is_ok());
        // An unknown field 15 (length-delimited) of 1 MiB beside 100 bytes of batches.
        let mut padded = with_batches(100).encode_to_vec();
        padded.extend_from_slice(&[0x7a, 0x80, 0x80, 0x40]);
        padded.extend(std::iter::repeat_n(0u8, 1 << 20));
        let decoded = v1::ProduceRequest::decode(padded.as_slice()).unwrap();
        assert_eq!(
            decoded.record_batches.len(),
            100,
            "prost drops the unknown field"
        );
        let error = check::<v1::ProduceRequest>(&padded).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(
            error.message().contains("unknown fields"),
            "{}",
            error.message()
        );
        // The field twice: prost keeps the last one.
        let mut twice = with_batches(1 << 20).encode_to_vec();
        twice.extend(
            v1::ProduceRequest {
                record_batches: vec![1u8; 10].into(),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        assert_eq!(
            v1::ProduceRequest::decode(twice.as_slice())
                .unwrap()
                .record_batches
                .len(),
            10
        );
        let error = check::<v1::ProduceRequest>(&twice).unwrap_err();
        assert!(
            error.message().contains("more than once"),
            "{}",
            error.message()
        );
        // The same through a stream message, split over two occurrences of its request.
        let stream: Vec<u8> = [plain.as_slice(), &with_batches(10).encode_to_vec()]
            .iter()
            .flat_map(|request| {
                v1::ProduceStreamRequest {
                    request_id: 1,
                    request: Some(v1::ProduceRequest::decode(*request).unwrap()),
                }
                .encode_to_vec()
            })
            .collect();
        assert!(check::<v1::ProduceStreamRequest>(&stream).is_err());
        let one = v1::ProduceStreamRequest {
            request_id: 1,
            request: Some(with_batches(1 << 20)),
        }
        .encode_to_vec();
        assert!(check::<v1::ProduceStreamRequest>(&one).is_ok());
    }

    #[test]
    fn malformed_bytes_are_left_to_prost() {
        for bytes in [
            &[0xff_u8; 12][..],
            &[0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
            &[][..],
        ] {
            assert!(check::<v1::ProduceRequest>(bytes).is_ok());
        }
    }
}
