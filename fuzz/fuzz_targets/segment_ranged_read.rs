//! The ranged read path: trailer (suffix read) → footer (range read) → chunk (range read).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shale_format::segment::{SEGMENT_TRAILER_LEN, decode_footer, find_chunk};
use shale_format::{Segment, SegmentTrailer, verify_chunk};

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
    let Ok(trailer) = SegmentTrailer::decode(data) else {
        return;
    };
    if data.len() < SEGMENT_TRAILER_LEN || trailer.check_object_len(data.len() as u64).is_err() {
        return;
    }
    let footer = trailer.footer_range();
    let Ok(metas) = decode_footer(&data[footer.start as usize..footer.end as usize], &trailer)
    else {
        return;
    };
    let mut all_chunks_ok = true;
    for meta in &metas {
        assert_eq!(
            find_chunk(&metas, meta.topic_id, meta.partition),
            Some(meta)
        );
        // decode_footer guarantees every chunk lies before the footer.
        let range = meta.byte_range();
        assert!(range.end <= footer.start);
        let chunk = Bytes::copy_from_slice(&data[range.start as usize..range.end as usize]);
        match verify_chunk(&chunk, meta) {
            Ok(batches) => assert_eq!(batches.len(), meta.batch_count as usize),
            Err(_) => all_chunks_ok = false,
        }
    }
    // The whole-object decoder agrees with the ranged path whenever it accepts.
    if let Ok(segment) = Segment::decode(Bytes::copy_from_slice(data)) {
        assert!(all_chunks_ok);
        assert_eq!(segment.chunks(), &metas[..]);
    }
}
