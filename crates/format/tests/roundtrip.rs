//! Property tests: everything encoded reads back exactly, for every codec and header field.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use shale_common::TopicId;
use shale_format::segment::{SEGMENT_TRAILER_LEN, decode_footer, find_chunk};
use shale_format::{
    BatchIter, BatchOptions, Compression, Header, Record, RecordBatch, Segment, SegmentBuilder,
    SegmentTrailer, TimestampType, ValidationOptions, encode_batch, set_base_offset,
    set_partition_leader_epoch, verify_chunk,
};

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        proptest::option::of(arb_bytes(40)),
        proptest::option::of(arb_bytes(200)),
        proptest::collection::vec(
            ("\\PC{0,12}", proptest::option::of(arb_bytes(20)))
                .prop_map(|(key, value)| Header { key, value }),
            0..4,
        ),
        // Any two timestamps in this range differ by less than i64::MAX.
        (i64::MIN / 2 + 1)..(i64::MAX / 2),
    )
        .prop_map(|(key, value, headers, timestamp_ms)| Record {
            key,
            value,
            headers,
            timestamp_ms,
        })
}

fn arb_codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(Compression::ALL.to_vec())
}

fn arb_options() -> impl Strategy<Value = BatchOptions> {
    (
        arb_codec(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        -1i64..1_000_000,
        any::<i16>(),
        any::<i32>(),
        0i64..(1 << 50),
        any::<i32>(),
    )
        .prop_map(
            |(
                compression,
                log_append,
                transactional,
                control,
                producer_id,
                producer_epoch,
                base_sequence,
                base_offset,
                partition_leader_epoch,
            )| {
                BatchOptions {
                    compression,
                    timestamp_type: if log_append {
                        TimestampType::LogAppendTime
                    } else {
                        TimestampType::CreateTime
                    },
                    transactional,
                    control,
                    producer_id,
                    producer_epoch,
                    base_sequence,
                    base_offset,
                    partition_leader_epoch,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn batches_round_trip(
        records in proptest::collection::vec(arb_record(), 1..20),
        options in arb_options(),
    ) {
        let bytes = encode_batch(&records, &options).expect("encode");
        let batch = RecordBatch::parse(bytes.clone()).expect("parse");
        batch.verify().expect("crc");
        let header = batch.header();
        let max = records.iter().map(|r| r.timestamp_ms).max().expect("non-empty");
        prop_assert_eq!(header.base_offset(), options.base_offset);
        prop_assert_eq!(header.partition_leader_epoch(), options.partition_leader_epoch);
        prop_assert_eq!(header.compression(), options.compression);
        prop_assert_eq!(header.timestamp_type(), options.timestamp_type);
        prop_assert_eq!(header.is_transactional(), options.transactional);
        prop_assert_eq!(header.is_control(), options.control);
        prop_assert_eq!(header.producer_id(), options.producer_id);
        prop_assert_eq!(header.producer_epoch(), options.producer_epoch);
        prop_assert_eq!(header.base_sequence(), options.base_sequence);
        prop_assert_eq!(header.record_count() as usize, records.len());
        prop_assert_eq!(header.last_offset(), options.base_offset + records.len() as i64 - 1);
        prop_assert_eq!(header.base_timestamp(), records[0].timestamp_ms);
        prop_assert_eq!(header.max_timestamp(), max);
        prop_assert_eq!(header.total_len(), bytes.len());

        let decoded = batch.records().expect("decode");
        prop_assert_eq!(decoded.len(), records.len());
        for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, options.base_offset + i as i64);
            let mut want = want.clone();
            if options.timestamp_type == TimestampType::LogAppendTime {
                want.timestamp_ms = max;
            }
            prop_assert_eq!(&got.record, &want);
        }

        // Plain client batches (create time, no control/transactions, offset 0) validate.
        if options.timestamp_type == TimestampType::CreateTime && !options.transactional
            && !options.control && (options.producer_id < 0
                || (options.producer_epoch >= 0 && options.base_sequence >= 0))
        {
            let validation = ValidationOptions { require_zero_base_offset: false, ..ValidationOptions::default() };
            let summary = batch.validate(&validation).expect("valid");
            prop_assert_eq!(summary.max_timestamp, max);
            prop_assert_eq!(summary.record_count as usize, records.len());
        }
    }

    #[test]
    fn commit_time_rewrites_keep_the_crc_valid(
        records in proptest::collection::vec(arb_record(), 1..5),
        codec in arb_codec(),
        new_offset in 0i64..(1 << 60),
        epoch: i32,
    ) {
        let options = BatchOptions { compression: codec, ..BatchOptions::default() };
        let mut bytes = encode_batch(&records, &options).expect("encode").to_vec();
        let crc = bytes[17..21].to_vec();
        set_base_offset(&mut bytes, new_offset).expect("offset");
        set_partition_leader_epoch(&mut bytes, epoch).expect("epoch");
        prop_assert_eq!(&bytes[17..21], &crc[..]);
        let batch = RecordBatch::parse(Bytes::from(bytes)).expect("parse");
        batch.verify().expect("crc still valid");
        prop_assert_eq!(batch.base_offset(), new_offset);
        prop_assert_eq!(batch.header().partition_leader_epoch(), epoch);
        let offsets: Vec<i64> = batch.records().expect("decode").iter().map(|r| r.offset).collect();
        let expected: Vec<i64> = (0..records.len() as i64).map(|i| new_offset + i).collect();
        prop_assert_eq!(offsets, expected);
    }

    #[test]
    fn concatenated_batches_iterate(
        batches in proptest::collection::vec(
            (proptest::collection::vec(arb_record(), 1..4), arb_codec()), 1..6),
    ) {
        let mut buf = Vec::new();
        let mut expected = Vec::new();
        let mut offset = 0;
        for (records, codec) in &batches {
            let bytes = encode_batch(records, &BatchOptions {
                compression: *codec,
                base_offset: offset,
                ..BatchOptions::default()
            }).expect("encode");
            offset += records.len() as i64;
            buf.extend_from_slice(&bytes);
            expected.push(bytes);
        }
        let got: Vec<Bytes> = BatchIter::new(Bytes::from(buf))
            .verifying()
            .map(|b| b.map(RecordBatch::into_bytes))
            .collect::<Result<_, _>>()
            .expect("iterate");
        prop_assert_eq!(got, expected);
    }
}

/// Per partition: the codecs and record counts of its batches.
type PartitionPlan = Vec<(Compression, usize)>;

fn arb_segment_plan() -> impl Strategy<Value = BTreeMap<(u8, u32), PartitionPlan>> {
    proptest::collection::btree_map(
        (0u8..4, 0u32..300),
        proptest::collection::vec((arb_codec(), 1usize..4), 1..3),
        1..40,
    )
}

fn plan_batches(
    plan: &BTreeMap<(u8, u32), PartitionPlan>,
) -> Vec<(TopicId, u32, Vec<RecordBatch>)> {
    plan.iter()
        .map(|(&(topic, partition), batches)| {
            let mut offset = i64::from(partition) * 10;
            let batches = batches
                .iter()
                .map(|&(compression, count)| {
                    let records: Vec<Record> = (0..count)
                        .map(|i| Record {
                            key: Some(Bytes::from(format!("{topic}-{partition}-{i}"))),
                            value: Some(Bytes::from(vec![topic; 30])),
                            headers: vec![],
                            timestamp_ms: 1_000 + offset + i as i64,
                        })
                        .collect();
                    let bytes = encode_batch(
                        &records,
                        &BatchOptions {
                            compression,
                            base_offset: offset,
                            ..BatchOptions::default()
                        },
                    )
                    .expect("encode");
                    offset += count as i64 + 1; // leave a gap, as compaction would
                    RecordBatch::parse(bytes).expect("parse")
                })
                .collect();
            (TopicId([topic; 16]), partition, batches)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn segments_round_trip(plan in arb_segment_plan(), seed: u64) {
        let partitions = plan_batches(&plan);
        // Add partitions in a scrambled order, batches of one partition in order.
        let mut order: Vec<usize> = (0..partitions.len()).collect();
        let len = order.len();
        for i in 0..len {
            order.swap(i, (seed.rotate_left(i as u32) as usize) % len);
        }
        let mut builder = SegmentBuilder::new();
        for &i in &order {
            let (topic, partition, batches) = &partitions[i];
            for batch in batches {
                builder.add_batch(*topic, *partition, batch).expect("add");
            }
        }
        let expected_len = builder.encoded_len();
        let (object, metas) = builder.finish();
        prop_assert_eq!(object.len(), expected_len);
        prop_assert_eq!(metas.len(), partitions.len());

        let segment = Segment::decode(object.clone()).expect("decode");
        prop_assert_eq!(segment.chunks(), &metas[..]);

        // The ranged path finds the same chunks.
        let trailer = SegmentTrailer::decode(&object[object.len() - SEGMENT_TRAILER_LEN..]).expect("trailer");
        trailer.check_object_len(object.len() as u64).expect("length");
        let footer = &object[trailer.footer_range().start as usize..trailer.footer_range().end as usize];
        let footer_metas = decode_footer(footer, &trailer).expect("footer");
        prop_assert_eq!(&footer_metas, &metas);

        for (topic, partition, batches) in &partitions {
            let meta = find_chunk(&footer_metas, *topic, *partition).expect("present");
            let range = meta.byte_range();
            let chunk = object.slice(range.start as usize..range.end as usize);
            let read = verify_chunk(&chunk, meta).expect("chunk");
            let want: Vec<&Bytes> = batches.iter().map(RecordBatch::as_bytes).collect();
            let got: Vec<&Bytes> = read.iter().map(RecordBatch::as_bytes).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(meta.base_offset, batches[0].base_offset());
            prop_assert_eq!(meta.last_offset, batches[batches.len() - 1].last_offset());
            prop_assert_eq!(meta.batch_count as usize, batches.len());
            let records: u64 = batches.iter().map(|b| b.record_count() as u64).sum();
            prop_assert_eq!(meta.record_count, records);
            let max = batches.iter().map(RecordBatch::max_timestamp).max().expect("batches");
            prop_assert_eq!(meta.max_timestamp, max);
            prop_assert_eq!(segment.find(*topic, *partition), Some(meta));
        }

        // Copying chunks into a new builder (as compaction would) reproduces the object.
        let mut copy = SegmentBuilder::new();
        for meta in segment.chunks().iter().rev() {
            copy.add_chunk(meta.topic_id, meta.partition, segment.chunk_bytes(meta)).expect("add chunk");
        }
        prop_assert_eq!(copy.finish().0, object);
    }
}

#[test]
fn empty_segment_round_trips() {
    let (object, metas) = SegmentBuilder::new().finish();
    assert!(metas.is_empty());
    assert_eq!(object.len(), shale_format::segment::MIN_SEGMENT_LEN);
    assert!(Segment::decode(object).expect("decode").chunks().is_empty());
}

#[test]
fn a_thousand_partitions_round_trip() {
    let batch = RecordBatch::parse(
        encode_batch(&[Record::default()], &BatchOptions::default()).expect("encode"),
    )
    .expect("parse");
    let mut builder = SegmentBuilder::new();
    for partition in 0..1000 {
        builder
            .add_batch(TopicId([(partition % 7) as u8; 16]), partition, &batch)
            .expect("add");
    }
    let (object, metas) = builder.finish();
    assert_eq!(metas.len(), 1000);
    let segment = Segment::decode(object).expect("decode");
    assert_eq!(segment.chunks().len(), 1000);
    assert!(segment.find(TopicId([3; 16]), 10).is_some());
    assert!(segment.find(TopicId([3; 16]), 11).is_none());
}

#[test]
fn builder_rejects_out_of_order_batches_and_bad_chunks() {
    let topic = TopicId([1; 16]);
    let batch_at = |offset| {
        RecordBatch::parse(
            encode_batch(
                &[Record::default(), Record::default()],
                &BatchOptions {
                    base_offset: offset,
                    ..BatchOptions::default()
                },
            )
            .expect("encode"),
        )
        .expect("parse")
    };
    let mut builder = SegmentBuilder::new();
    builder.add_batch(topic, 0, &batch_at(10)).expect("first");
    assert!(
        builder.add_batch(topic, 0, &batch_at(11)).is_err(),
        "overlaps 10..=11"
    );
    assert!(
        builder.add_batch(topic, 0, &batch_at(5)).is_err(),
        "goes backwards"
    );
    builder.add_batch(topic, 0, &batch_at(12)).expect("follows");
    builder
        .add_batch(topic, 1, &batch_at(0))
        .expect("other partition");

    // A chunk whose second batch is damaged adds nothing.
    let mut chunk = [batch_at(20).into_bytes(), batch_at(22).into_bytes()].concat();
    let last = chunk.len() - 1;
    chunk[last] ^= 1;
    let before = builder.encoded_len();
    assert!(builder.add_chunk(topic, 0, Bytes::from(chunk)).is_err());
    assert_eq!(builder.encoded_len(), before);
    // A chunk whose batches go backwards adds nothing either.
    let chunk = [batch_at(30).into_bytes(), batch_at(25).into_bytes()].concat();
    assert!(builder.add_chunk(topic, 0, Bytes::from(chunk)).is_err());
    assert_eq!(builder.encoded_len(), before);
    let (object, metas) = builder.finish();
    assert_eq!(metas.len(), 2);
    assert_eq!(
        (
            metas[0].base_offset,
            metas[0].last_offset,
            metas[0].batch_count
        ),
        (10, 13, 2)
    );
    Segment::decode(object).expect("valid");
}

/// Batches of assorted sizes (some past the size where the chunk CRC is derived from the
/// batch CRC), each with the offset and epoch a leader would assign.
fn arb_rebased_plan() -> impl Strategy<Value = Vec<(u32, usize, i64, i32)>> {
    proptest::collection::vec(
        (
            0u32..3,
            prop_oneof![1usize..200, 16_000usize..40_000],
            0i64..1_000_000,
            0i32..50,
        ),
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Rebasing while building gives exactly the object built from batches rebased in place,
    /// and cutting it into blocks changes nothing but the cut.
    #[test]
    fn rebased_batches_in_blocks_match_the_plain_object(
        plan in arb_rebased_plan(),
        block_size in prop_oneof![1usize..64, 4096usize..70_000],
        fill: u8,
    ) {
        let topic = TopicId([7; 16]);
        let mut rebased = SegmentBuilder::new();
        let mut plain = SegmentBuilder::new();
        let mut next: BTreeMap<u32, i64> = BTreeMap::new();
        for (i, &(partition, value_len, gap, epoch)) in plan.iter().enumerate() {
            // Values that do not compress, so large batches stay large.
            let value: Vec<u8> = (0..value_len).map(|j| (j as u8).wrapping_mul(31) ^ fill ^ i as u8).collect();
            let records = vec![Record { key: None, value: Some(Bytes::from(value)), headers: vec![], timestamp_ms: 5 }];
            let bytes = encode_batch(&records, &BatchOptions::default()).expect("encode");
            let offset = next.get(&partition).copied().unwrap_or(0) + gap;
            next.insert(partition, offset + 1);
            let batch = RecordBatch::parse(bytes.clone()).expect("parse");
            rebased.add_rebased_batch(topic, partition, &batch, offset, epoch).expect("add rebased");
            let mut copy = bytes::BytesMut::from(&bytes[..]);
            set_base_offset(&mut copy, offset).expect("set offset");
            set_partition_leader_epoch(&mut copy, epoch).expect("set epoch");
            plain.add_batch(topic, partition, &RecordBatch::parse(copy.freeze()).expect("parse")).expect("add");
        }
        let (expected, expected_metas) = plain.finish();
        let (blocks, metas) = rebased.finish_blocks(block_size);
        prop_assert_eq!(&metas, &expected_metas);
        let (last, full) = blocks.split_last().expect("at least one block");
        prop_assert!(full.iter().all(|block| block.len() == block_size));
        prop_assert!(!last.is_empty() && last.len() <= block_size);
        let joined: Vec<u8> = blocks.iter().flat_map(|block| block.iter().copied()).collect();
        prop_assert_eq!(&joined[..], &expected[..]);
        Segment::decode(Bytes::from(joined)).expect("a valid segment");
    }
}

#[test]
fn rebasing_refuses_offsets_that_overflow() {
    let records = vec![
        Record {
            key: None,
            value: None,
            headers: vec![],
            timestamp_ms: 1
        };
        3
    ];
    let batch =
        RecordBatch::parse(encode_batch(&records, &BatchOptions::default()).expect("encode"))
            .expect("parse");
    let mut builder = SegmentBuilder::new();
    assert!(
        builder
            .add_rebased_batch(TopicId([1; 16]), 0, &batch, i64::MAX - 1, 0)
            .is_err()
    );
    assert!(
        builder
            .add_rebased_batch(TopicId([1; 16]), 0, &batch, -1, 0)
            .is_err()
    );
    assert!(builder.is_empty(), "a refused batch adds nothing");
}
