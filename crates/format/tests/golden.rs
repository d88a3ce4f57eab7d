//! Golden vectors: bytes written by real Kafka software, and hand-computed layouts, so the
//! batch format is provably Kafka's and not merely self-consistent.

use bytes::Bytes;
use shale_format::{
    BatchIter, BatchOptions, Compression, Header, Record, RecordBatch, TimestampType, encode_batch,
};

fn from_hex(hex: &str) -> Vec<u8> {
    let hex: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
    hex.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
        .collect()
}

/// Four batches of a real Kafka (KRaft) `__cluster_metadata` log, written by the Java broker.
fn kafka_metadata_log() -> Bytes {
    Bytes::from(from_hex(include_str!(
        "../testdata/kafka-kraft-metadata-log.hex"
    )))
}

/// Re-encodes a decoded batch with this crate's encoder, using the stored header fields.
fn reencode(batch: &RecordBatch) -> Bytes {
    let header = batch.header();
    let records: Vec<Record> = batch
        .records()
        .expect("decode")
        .into_iter()
        .map(|decoded| decoded.record)
        .collect();
    let options = BatchOptions {
        compression: header.compression(),
        timestamp_type: header.timestamp_type(),
        transactional: header.is_transactional(),
        control: header.is_control(),
        producer_id: header.producer_id(),
        producer_epoch: header.producer_epoch(),
        base_sequence: header.base_sequence(),
        base_offset: header.base_offset(),
        partition_leader_epoch: header.partition_leader_epoch(),
    };
    encode_batch(&records, &options).expect("encode")
}

#[test]
fn real_kafka_log_parses_verifies_and_decodes() {
    let log = kafka_metadata_log();
    assert_eq!(log.len(), 663);
    let batches: Vec<RecordBatch> = BatchIter::new(log)
        .verifying()
        .collect::<Result<_, _>>()
        .expect("kafka's own bytes are valid");
    let summary: Vec<(i64, i64, i32, usize)> = batches
        .iter()
        .map(|b| {
            (
                b.base_offset(),
                b.last_offset(),
                b.record_count(),
                b.byte_len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, 1, 1, 91),
            (2, 3, 2, 166),
            (4, 5, 2, 166),
            (6, 8, 3, 240)
        ]
    );
    let first = batches[0].header();
    assert_eq!(first.partition_leader_epoch(), 1);
    assert_eq!(first.crc(), 0xb069_457c);
    assert_eq!(first.base_timestamp(), 0x0191_e05a_f818);
    assert_eq!(first.max_timestamp(), 0x0191_e05a_f818);
    assert_eq!(first.producer_id(), -1);
    assert_eq!(first.producer_epoch(), -1);
    assert_eq!(first.base_sequence(), -1);
    assert_eq!(first.compression(), Compression::None);

    // The first record is the feature-level record for "metadata.version".
    let records = batches[0].records().expect("decode");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].offset, 1);
    assert_eq!(records[0].record.key, None);
    let mut value = vec![0x01, 0x0c, 0x00, 0x11];
    value.extend_from_slice(b"metadata.version");
    value.extend_from_slice(&[0x00, 0x14, 0x00]);
    assert_eq!(records[0].record.value.as_deref(), Some(&value[..]));
    let offsets: Vec<i64> = batches[3]
        .records()
        .expect("decode")
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, [6, 7, 8]);
}

#[test]
fn reencoding_real_kafka_batches_is_byte_identical() {
    for batch in BatchIter::new(kafka_metadata_log()) {
        let batch = batch.expect("parse");
        assert_eq!(
            &reencode(&batch),
            batch.as_bytes(),
            "batch at offset {}",
            batch.base_offset()
        );
    }
    // A single-record produce from a Kafka tutorial log (producer id/epoch/sequence 0).
    let hello = Bytes::from(from_hex(
        "0000000000000000000000440000000002abfd049100000000000000000191e05b6d8b00000191e05b6d8b\
         00000000000000000000000000000000000124000000011848656c6c6f204b61666b612100",
    ));
    let batch = RecordBatch::parse(hello.clone()).expect("parse");
    let records = batch.records().expect("decode");
    assert_eq!(
        records[0].record.value.as_deref(),
        Some(&b"Hello Kafka!"[..])
    );
    assert_eq!(reencode(&batch), hello);
}

/// The record of the published test vectors of a widely used Kafka client (Go): key
/// [1,2,3,4], value [5,6,7], one header [8,9,10] = [11,12], timestamp delta 5 ms.
fn client_vector_record() -> Record {
    Record {
        key: Some(Bytes::from_static(&[1, 2, 3, 4])),
        value: Some(Bytes::from_static(&[5, 6, 7])),
        headers: vec![Header {
            key: "\u{8}\u{9}\u{a}".to_owned(),
            value: Some(Bytes::from_static(&[11, 12])),
        }],
        timestamp_ms: 1_479_847_795_005,
    }
}

const CLIENT_HEADER_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn client_vector(length: u8, crc: [u8; 4], attributes: u8, records: &[u8]) -> Vec<u8> {
    let mut out = CLIENT_HEADER_PREFIX.to_vec();
    out[11] = length;
    out.extend_from_slice(&[0, 0, 0, 0, 2]); // leader epoch 0, magic 2
    out.extend_from_slice(&crc);
    out.extend_from_slice(&[0, attributes, 0, 0, 0, 0]); // attributes, last offset delta 0
    out.extend_from_slice(&[0, 0, 1, 88, 141, 205, 89, 56]); // first timestamp 1479847795000
    out.extend_from_slice(&[0; 8]); // max timestamp 0 (as that client's vector has it)
    out.extend_from_slice(&[0; 8 + 2 + 4]); // producer id, epoch, base sequence: 0
    out.extend_from_slice(&[0, 0, 0, 1]); // one record
    out.extend_from_slice(records);
    out
}

const CLIENT_RECORD: [u8; 21] = [
    40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12,
];

#[test]
fn decodes_published_client_vectors() {
    // baseTimestamp 1479847795000 with a record at delta 5; maxTimestamp stored as 0.
    let uncompressed = client_vector(70, [84, 121, 97, 253], 0, &CLIENT_RECORD);
    let gzip = client_vector(
        95,
        [231, 74, 206, 165],
        1,
        &[
            31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 0, 21, 0, 234, 255, 40, 0, 10, 0, 8, 1, 2, 3, 4,
            6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12, 3, 0, 173, 201, 88, 103, 21, 0, 0, 0,
        ],
    );
    // Raw snappy, as non-Java clients write it (no xerial framing).
    let snappy = client_vector(
        72,
        [21, 0, 159, 97],
        2,
        &[
            21, 80, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12,
        ],
    );
    // LZ4 frame with a content checksum and 4 MiB block size.
    let lz4 = client_vector(
        89,
        [169, 74, 119, 197],
        3,
        &[
            4, 34, 77, 24, 100, 112, 185, 21, 0, 0, 128, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7,
            2, 6, 8, 9, 10, 4, 11, 12, 0, 0, 0, 0, 12, 59, 239, 146,
        ],
    );
    for (codec, bytes) in [
        (Compression::None, uncompressed),
        (Compression::Gzip, gzip),
        (Compression::Snappy, snappy),
        (Compression::Lz4, lz4),
    ] {
        let batch = RecordBatch::parse(Bytes::from(bytes)).expect("parse");
        assert_eq!(batch.compression(), codec);
        let records = batch.records().expect("decode");
        assert_eq!(records.len(), 1, "{codec}");
        assert_eq!(records[0].offset, 0);
        assert_eq!(records[0].record, client_vector_record(), "{codec}");
    }
}

#[test]
fn decodes_published_empty_and_control_batches() {
    // Batches with no records (as log compaction leaves them) and a control batch.
    for (crc, attributes) in [([89, 95, 183, 221], 0u8), ([81, 46, 67, 217], 32)] {
        let mut bytes = client_vector(49, crc, attributes, &[]);
        bytes[27..35].fill(0); // first timestamp 0 in these vectors
        bytes[60] = 0; // no records
        let batch = RecordBatch::parse(Bytes::from(bytes)).expect("parse");
        assert!(batch.records().expect("decode").is_empty());
        assert_eq!(batch.header().is_control(), attributes == 32);
    }
}

#[test]
fn header_fields_sit_at_kafkas_offsets() {
    // Distinctive values so each field is recognisable in the hex.
    let options = BatchOptions {
        compression: Compression::None,
        timestamp_type: TimestampType::CreateTime,
        transactional: true,
        control: false,
        producer_id: 0x1122_3344_5566_7788,
        producer_epoch: 0x99aa_u16 as i16,
        base_sequence: 0x0bcc_ddee,
        base_offset: 0x0102_0304_0506_0708,
        partition_leader_epoch: 0x0a0b_0c0d,
    };
    let records = [
        Record {
            key: None,
            value: Some(Bytes::from_static(b"a")),
            headers: vec![],
            timestamp_ms: 0x0000_0100_0000_0000,
        },
        Record {
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![],
            timestamp_ms: 0x0000_0100_0000_0003,
        },
    ];
    let bytes = encode_batch(&records, &options).expect("encode");
    // Record 0: len 7 (zigzag 14), attrs 0, ts delta 0, offset delta 0, key null (-1 → 1),
    // value len 1 (2), "a", 0 headers.
    let record0 = [14, 0, 0, 0, 1, 2, b'a', 0];
    // Record 1: len 7, attrs 0, ts delta 3 (6), offset delta 1 (2), key len 1 (2), "k",
    // value null (1), 0 headers.
    let record1 = [14, 0, 6, 2, 2, b'k', 1, 0];
    let mut expected = Vec::new();
    expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // baseOffset
    expected.extend_from_slice(&(61_i32 - 12 + 16).to_be_bytes()); // batchLength
    expected.extend_from_slice(&[0x0a, 0x0b, 0x0c, 0x0d]); // partitionLeaderEpoch
    expected.push(2); // magic
    expected.extend_from_slice(&[0; 4]); // crc, filled below
    expected.extend_from_slice(&[0x00, 0x10]); // attributes: transactional
    expected.extend_from_slice(&[0, 0, 0, 1]); // lastOffsetDelta
    expected.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0]); // baseTimestamp (first record)
    expected.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 3]); // maxTimestamp
    expected.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]); // producerId
    expected.extend_from_slice(&[0x99, 0xaa]); // producerEpoch
    expected.extend_from_slice(&[0x0b, 0xcc, 0xdd, 0xee]); // baseSequence
    expected.extend_from_slice(&[0, 0, 0, 2]); // records count
    expected.extend_from_slice(&record0);
    expected.extend_from_slice(&record1);
    // CRC-32C computed bit by bit here rather than with the crate the encoder uses.
    let crc = crc32c_bitwise(&expected[21..]);
    expected[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(&bytes[..], &expected[..]);
}

/// CRC-32C (Castagnoli): reflected polynomial 0x82f63b78, init and xorout 0xffffffff.
fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn bitwise_crc32c_matches_the_standard_check_value() {
    // "123456789" → 0xe3069283 is CRC-32C's catalogued check value.
    assert_eq!(crc32c_bitwise(b"123456789"), 0xe306_9283);
}
