//! Damage must be an error, never data: every single-byte (and, for small objects, every
//! single-bit) corruption of a stored batch or segment is reported, truncation is
//! reported, and hostile lengths and compression bombs are refused without large
//! allocations.

use bytes::Bytes;
use shale_common::TopicId;
use shale_format::segment::{SEGMENT_TRAILER_LEN, decode_footer, find_chunk};
use shale_format::{
    BatchError, BatchOptions, ChunkMeta, Compression, DecodedRecord, Header, Record, RecordBatch,
    Segment, SegmentBuilder, SegmentError, SegmentTrailer, encode_batch, verify_chunk,
};

fn records(n: usize, seed: u8) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: (i % 3 != 0).then(|| Bytes::from(vec![seed.wrapping_add(i as u8); 3])),
            value: Some(Bytes::from(format!("value {seed} {i} ").repeat(3))),
            headers: if i % 2 == 0 {
                vec![Header {
                    key: "trace".to_owned(),
                    value: Some(Bytes::from_static(b"abc")),
                }]
            } else {
                vec![]
            },
            timestamp_ms: 1_700_000_000_000 + i as i64 * 7,
        })
        .collect()
}

fn batch(codec: Compression, base_offset: i64, n: usize, seed: u8) -> Bytes {
    encode_batch(
        &records(n, seed),
        &BatchOptions {
            compression: codec,
            base_offset,
            partition_leader_epoch: 3,
            producer_id: 42,
            producer_epoch: 1,
            base_sequence: 0,
            ..BatchOptions::default()
        },
    )
    .expect("encode")
}

/// The full read path of one stored batch: parse, verify the CRC, decode.
fn read_batch(bytes: &[u8]) -> Result<Vec<DecodedRecord>, BatchError> {
    let batch = RecordBatch::parse(Bytes::copy_from_slice(bytes))?;
    batch.verify()?;
    batch.records()
}

/// baseOffset (bytes 0..8) and partitionLeaderEpoch (12..16) are outside the batch CRC by
/// Kafka's design; the segment chunk CRC covers them (tested below).
fn outside_batch_crc(index: usize) -> bool {
    index < 8 || (12..16).contains(&index)
}

fn check_batch_flip(original: &[u8], good: &[DecodedRecord], index: usize, mask: u8) {
    let mut damaged = original.to_vec();
    damaged[index] ^= mask;
    let result = read_batch(&damaged);
    if outside_batch_crc(index) {
        // Either refused (e.g. a negative offset) or read with only that field changed.
        if let Ok(records) = result {
            let strip =
                |r: &[DecodedRecord]| r.iter().map(|d| d.record.clone()).collect::<Vec<_>>();
            assert_eq!(strip(&records), strip(good), "byte {index}");
        }
    } else {
        assert!(
            result.is_err(),
            "byte {index} ^ {mask:#04x} went undetected"
        );
    }
}

#[test]
fn every_byte_flip_of_a_batch_is_detected() {
    for codec in Compression::ALL {
        let bytes = batch(codec, 100, 5, 1);
        let good = read_batch(&bytes).expect("valid");
        for index in 0..bytes.len() {
            for mask in [0x01, 0x80, 0xff] {
                check_batch_flip(&bytes, &good, index, mask);
            }
        }
    }
}

#[test]
fn every_bit_flip_of_a_small_batch_is_detected() {
    for codec in [Compression::None, Compression::Snappy] {
        let bytes = batch(codec, 0, 1, 9);
        assert!(bytes.len() < 200);
        let good = read_batch(&bytes).expect("valid");
        for index in 0..bytes.len() {
            for bit in 0..8 {
                check_batch_flip(&bytes, &good, index, 1 << bit);
            }
        }
    }
}

#[test]
fn every_truncation_of_a_batch_is_incomplete() {
    for codec in Compression::ALL {
        let bytes = batch(codec, 0, 3, 2);
        for len in 0..bytes.len() {
            let error = RecordBatch::parse(bytes.slice(..len)).expect_err("truncated");
            assert!(error.is_incomplete(), "{codec} {len}: {error}");
        }
    }
}

fn topic(n: u8) -> TopicId {
    TopicId([n; 16])
}

/// Several topics and partitions, several batches each, mixed codecs.
fn sample_segment() -> (Bytes, Vec<ChunkMeta>) {
    let mut builder = SegmentBuilder::new();
    let mut seed = 0;
    for t in [3u8, 1, 2] {
        for partition in [5u32, 0] {
            let mut offset = i64::from(t) * 1000 + i64::from(partition) * 100;
            for (i, codec) in [Compression::None, Compression::Zstd]
                .into_iter()
                .enumerate()
            {
                seed += 1;
                let bytes = batch(codec, offset, 2 + i, seed);
                let parsed = RecordBatch::parse(bytes).expect("parse");
                offset = parsed.last_offset() + 1;
                builder
                    .add_batch(topic(t), partition, &parsed)
                    .expect("add");
            }
        }
    }
    builder.finish()
}

fn small_segment() -> (Bytes, Vec<ChunkMeta>) {
    let mut builder = SegmentBuilder::new();
    let parsed = RecordBatch::parse(batch(Compression::None, 7, 1, 1)).expect("parse");
    builder.add_batch(topic(9), 1, &parsed).expect("add");
    builder.finish()
}

#[test]
fn sample_segment_is_valid() {
    let (object, metas) = sample_segment();
    let segment = Segment::decode(object).expect("valid");
    assert_eq!(segment.chunks(), &metas[..]);
    assert_eq!(metas.len(), 6);
}

#[test]
fn every_byte_flip_of_a_segment_is_detected() {
    let (object, _) = sample_segment();
    for index in 0..object.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut damaged = object.to_vec();
            damaged[index] ^= mask;
            assert!(
                Segment::decode(Bytes::from(damaged)).is_err(),
                "byte {index} ^ {mask:#04x} of {} went undetected",
                object.len()
            );
        }
    }
}

#[test]
fn every_bit_flip_of_a_small_segment_is_detected() {
    let (object, _) = small_segment();
    assert!(object.len() < 300);
    for index in 0..object.len() {
        for bit in 0..8 {
            let mut damaged = object.to_vec();
            damaged[index] ^= 1 << bit;
            assert!(
                Segment::decode(Bytes::from(damaged)).is_err(),
                "byte {index} bit {bit} went undetected"
            );
        }
    }
}

#[test]
fn every_truncation_of_a_segment_is_detected() {
    let (object, _) = sample_segment();
    for len in 0..object.len() {
        assert!(Segment::decode(object.slice(..len)).is_err(), "{len}");
    }
    // Also with bytes appended, and with the trailer of a different object.
    let mut longer = object.to_vec();
    longer.splice(0..0, [0u8; 4]);
    assert!(Segment::decode(Bytes::from(longer)).is_err());
}

/// The ranged read path: trailer (suffix read) → footer (range read) → chunk (range read).
fn ranged_read(object: &[u8], meta: &ChunkMeta) -> Result<Vec<RecordBatch>, SegmentError> {
    let tail = &object[object.len() - SEGMENT_TRAILER_LEN..];
    let trailer = SegmentTrailer::decode(tail)?;
    trailer.check_object_len(object.len() as u64)?;
    let range = trailer.footer_range();
    let footer = &object[range.start as usize..range.end as usize];
    let metas = decode_footer(footer, &trailer)?;
    let Some(found) = find_chunk(&metas, meta.topic_id, meta.partition) else {
        return Err(SegmentError::Invalid {
            part: shale_format::SegmentPart::Footer,
            reason: "partition missing".to_owned(),
        });
    };
    let range = found.byte_range();
    let chunk = Bytes::copy_from_slice(&object[range.start as usize..range.end as usize]);
    let batches = verify_chunk(&chunk, found)?;
    if found != meta {
        return Err(SegmentError::Invalid {
            part: shale_format::SegmentPart::Footer,
            reason: "entry changed".to_owned(),
        });
    }
    Ok(batches)
}

#[test]
fn ranged_reads_detect_corruption_in_every_byte_they_read() {
    let (object, metas) = sample_segment();
    let footer_and_trailer = metas.last().map_or(12, |m| m.byte_range().end) as usize..object.len();
    for meta in &metas {
        let good: Vec<Bytes> = ranged_read(&object, meta)
            .expect("valid")
            .into_iter()
            .map(RecordBatch::into_bytes)
            .collect();
        let chunk = meta.byte_range();
        for index in 0..object.len() {
            let mut damaged = object.to_vec();
            damaged[index] ^= 0x20;
            let read_by_path = footer_and_trailer.contains(&index)
                || (chunk.start..chunk.end).contains(&(index as u64));
            match ranged_read(&damaged, meta) {
                Err(_) => assert!(
                    read_by_path,
                    "byte {index} outside the path failed the read"
                ),
                Ok(batches) => {
                    assert!(!read_by_path, "byte {index} on the path went undetected");
                    let bytes: Vec<Bytes> =
                        batches.into_iter().map(RecordBatch::into_bytes).collect();
                    assert_eq!(bytes, good);
                }
            }
        }
    }
}

#[test]
fn batch_fields_outside_the_batch_crc_are_caught_by_the_chunk_crc() {
    let (object, metas) = sample_segment();
    for meta in &metas {
        let chunk_start = meta.byte_offset as usize;
        let segment = Segment::decode(object.clone()).expect("valid");
        for batch in segment.batches(meta) {
            let batch_start = chunk_start + batch.expect("batch").position();
            for field in (0..8).chain(12..16) {
                let index = batch_start + field;
                let mut damaged = object.to_vec();
                damaged[index] ^= 0x01;
                assert!(Segment::decode(Bytes::from(damaged.clone())).is_err());
                let error = ranged_read(&damaged, meta).expect_err("chunk crc");
                assert!(
                    matches!(error, SegmentError::ChunkMismatch { .. }),
                    "byte {index}: {error}"
                );
            }
        }
    }
}

/// Re-seals a hand-edited batch with a correct CRC, so only the edit is under test.
fn reseal(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn decompression_is_bounded_for_every_codec() {
    let bomb = [Record {
        value: Some(Bytes::from(vec![0u8; 4 << 20])),
        ..Record::default()
    }];
    for codec in Compression::ALL.into_iter().skip(1) {
        let bytes = encode_batch(
            &bomb,
            &BatchOptions {
                compression: codec,
                ..BatchOptions::default()
            },
        )
        .expect("encode");
        assert!(bytes.len() < 300 << 10, "{codec}: {} bytes", bytes.len());
        let batch = RecordBatch::parse(bytes).expect("parse");
        assert!(
            matches!(
                batch.records_with_limit(1 << 20),
                Err(BatchError::DecompressionLimit {
                    limit: 1_048_576,
                    ..
                })
            ),
            "{codec}"
        );
        assert_eq!(batch.records().expect("within default").len(), 1);
    }
}

#[test]
fn default_limit_refuses_a_64_mib_bomb() {
    let bomb = [Record {
        value: Some(Bytes::from(vec![0u8; 65 << 20])),
        ..Record::default()
    }];
    let bytes = encode_batch(
        &bomb,
        &BatchOptions {
            compression: Compression::Zstd,
            ..BatchOptions::default()
        },
    )
    .expect("encode");
    assert!(bytes.len() < 64 << 10);
    let batch = RecordBatch::parse(bytes).expect("parse");
    assert!(matches!(
        batch.records(),
        Err(BatchError::DecompressionLimit { .. })
    ));
}

#[test]
fn declared_sizes_beyond_the_limit_are_refused_before_allocating() {
    // A snappy records section that declares 4 GiB of output in five bytes.
    let mut bytes = batch(Compression::Snappy, 0, 1, 0).to_vec();
    bytes.truncate(61);
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let length = (bytes.len() - 12) as i32;
    bytes[8..12].copy_from_slice(&length.to_be_bytes());
    reseal(&mut bytes);
    let batch = RecordBatch::parse(Bytes::from(bytes)).expect("parse");
    assert!(matches!(
        batch.records(),
        Err(BatchError::DecompressionLimit { .. })
    ));
}

#[test]
fn absurd_counts_and_lengths_do_not_allocate() {
    // Header claims i32::MAX records over a few bytes: capacity must not follow the count.
    let mut bytes = batch(Compression::None, 0, 1, 0).to_vec();
    bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    bytes[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    reseal(&mut bytes);
    let batch = RecordBatch::parse(Bytes::from(bytes)).expect("parse");
    assert!(matches!(batch.records(), Err(BatchError::Record { .. })));

    // Footer claiming u32::MAX entries.
    let (object, _) = small_segment();
    let trailer = SegmentTrailer::decode(&object).expect("trailer");
    let mut footer =
        object[trailer.footer_range().start as usize..trailer.footer_range().end as usize].to_vec();
    footer[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    let forged = SegmentTrailer {
        footer_crc32c: crc32c::crc32c(&footer),
        ..trailer
    };
    assert!(decode_footer(&footer, &forged).is_err());
}

#[test]
fn garbage_after_the_last_record_is_an_error() {
    for codec in [Compression::None, Compression::Gzip] {
        // Append bytes to the records section (uncompressed) or after the compressed stream.
        let mut bytes = batch(codec, 0, 2, 0).to_vec();
        bytes.extend_from_slice(&[0, 0, 0]);
        let length = (bytes.len() - 12) as i32;
        bytes[8..12].copy_from_slice(&length.to_be_bytes());
        reseal(&mut bytes);
        let batch = RecordBatch::parse(Bytes::from(bytes)).expect("parse");
        batch.verify().expect("crc was resealed");
        assert!(batch.records().is_err(), "{codec}");
    }
}
