//! Whole segment objects.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shale_format::{Segment, SegmentBuilder, verify_chunk};

#[path = "reseal.rs"]
mod reseal;

fuzz_target!(|data: &[u8]| {
    check(data);
    // Mutations nearly always break a checksum; a resealed copy reaches the parsers.
    let mut resealed = data.to_vec();
    reseal::reseal_segment(&mut resealed);
    check(&resealed);
});

fn check(data: &[u8]) {
    let Ok(segment) = Segment::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut builder = SegmentBuilder::new();
    for meta in segment.chunks() {
        let chunk = segment.chunk_bytes(meta);
        verify_chunk(&chunk, meta).expect("decode verified every chunk");
        for batch in segment.batches(meta) {
            let _ = batch.expect("verified").records_with_limit(1 << 20);
        }
        builder
            .add_chunk(meta.topic_id, meta.partition, chunk)
            .expect("verified chunks rebuild");
    }
    // The encoding is canonical: anything accepted is exactly what the builder writes.
    let (again, metas) = builder.finish();
    assert_eq!(metas, segment.chunks());
    assert_eq!(&again[..], data);
}
