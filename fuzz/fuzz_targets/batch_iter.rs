//! Concatenated batches (a produce request's records, a chunk, a fetch response).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shale_format::BatchIter;

#[path = "reseal.rs"]
mod reseal;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut resealed = data.to_vec();
    reseal::reseal_batches(&mut resealed);
    check(&resealed);
});

fn check(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    let mut iter = BatchIter::new(buf.clone()).verifying();
    let mut end = 0;
    for item in iter.by_ref() {
        match item {
            Ok(batch) => {
                // Batches tile the buffer in order, sliced, never copied or altered.
                assert_eq!(batch.position(), end);
                end += batch.byte_len();
                assert_eq!(batch.as_bytes(), &buf.slice(batch.position()..end));
                let _ = batch.records_with_limit(1 << 20);
            }
            Err(error) => {
                if error.is_incomplete() {
                    assert!(data.len() > end, "incomplete with nothing left");
                }
                break;
            }
        }
    }
    assert_eq!(iter.position(), end);
    assert!(iter.next().is_none(), "iteration is fused");
    // Without CRC checks the iterator yields at least as many batches, the same ones first.
    let verified = BatchIter::new(buf.clone())
        .verifying()
        .take_while(Result::is_ok)
        .count();
    let unverified = BatchIter::new(buf).take_while(Result::is_ok).count();
    assert!(unverified >= verified);
}
