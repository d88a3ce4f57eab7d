//! One batch: parse, verify, decode, validate, re-encode, rewrite the offset.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shale_format::{
    BatchHeader, BatchOptions, Record, RecordBatch, ValidationOptions, encode_batch,
    set_base_offset,
};

/// Keeps each run fast; the bound itself is what is being exercised.
const LIMIT: usize = 1 << 20;

#[path = "reseal.rs"]
mod reseal;

fuzz_target!(|data: &[u8]| {
    check(data);
    // Mutations nearly always break the CRC; a resealed copy reaches the decoders.
    let mut resealed = data.to_vec();
    reseal::reseal_batches(&mut resealed);
    check(&resealed);
});

fn check(data: &[u8]) {
    let _ = BatchHeader::parse(data);
    let Ok(batch) = RecordBatch::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let crc_ok = batch.verify().is_ok();
    let decoded = batch.records_with_limit(LIMIT);
    let permissive = ValidationOptions {
        allow_transactional: true,
        allow_control: true,
        require_zero_base_offset: false,
        max_decompressed_bytes: LIMIT,
    };
    let validated = batch.validate(&permissive);
    let Ok(records) = decoded else {
        assert!(
            validated.is_err(),
            "validation accepted a batch that does not decode"
        );
        return;
    };
    // Corruption is never data.
    assert!(crc_ok, "records returned from a batch with a bad crc");
    let header = batch.header();
    assert_eq!(records.len(), header.record_count() as usize);
    for pair in records.windows(2) {
        assert!(pair[0].offset < pair[1].offset);
    }
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        assert!(first.offset >= header.base_offset());
        assert!(last.offset <= header.last_offset());
    }
    if let Ok(summary) = validated {
        assert_eq!(summary.record_count, header.record_count());
    }

    // Decoded records re-encode to a batch that decodes to the same records (when offsets
    // are dense, the one shape the encoder makes).
    let dense = records
        .iter()
        .enumerate()
        .all(|(i, r)| r.offset == header.base_offset() + i as i64);
    if dense && !records.is_empty() {
        let plain: Vec<Record> = records.iter().map(|r| r.record.clone()).collect();
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
        // Encoding refuses timestamp deltas that overflow relative to the first record;
        // decoding accepts them relative to baseTimestamp. Skip those.
        if let Ok(again) = encode_batch(&plain, &options) {
            let back = RecordBatch::parse(again)
                .expect("own output parses")
                .records_with_limit(usize::MAX)
                .expect("own output decodes");
            assert_eq!(back, records);
        }
    }

    // Assigning an offset at commit keeps the batch valid.
    let mut copy = data.to_vec();
    if set_base_offset(&mut copy, 1 << 40).is_ok() {
        let moved = RecordBatch::parse(Bytes::from(copy)).expect("still parses");
        moved.verify().expect("crc unaffected by the base offset");
    }
}
