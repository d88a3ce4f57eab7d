//! The fuzz seed corpus (`fuzz/seeds/<target>/`): small valid inputs that fuzzing mutates.
//!
//! By default the test checks that every committed seed still decodes with today's format
//! code (a stale seed only teaches the fuzzer the error path). When the formats change,
//! rewrite them:
//!
//! ```sh
//! SHALE_WRITE_FUZZ_SEEDS=1 cargo test -p shale-format --test fuzz_seeds
//! ```

use std::path::Path;

use bytes::Bytes;
use shale_common::TopicId;
use shale_format::{
    BatchOptions, Compression, Header, Record, RecordBatch, Segment, SegmentBuilder, encode_batch,
};

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value-{i}-").repeat(2))),
            headers: vec![Header {
                key: "h".to_owned(),
                value: (i % 3 != 0).then(|| Bytes::from_static(b"hv")),
            }],
            timestamp_ms: 1_700_000_000_000 + i as i64,
        })
        .collect()
}

fn batch(codec: Compression, base_offset: i64, n: usize) -> Bytes {
    encode_batch(
        &records(n),
        &BatchOptions {
            compression: codec,
            base_offset,
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 0,
            ..BatchOptions::default()
        },
    )
    .expect("encode")
}

fn segment(partitions: u32) -> Bytes {
    let mut builder = SegmentBuilder::new();
    for partition in 0..partitions {
        let codec = Compression::ALL[partition as usize % Compression::ALL.len()];
        let first = RecordBatch::parse(batch(codec, 0, 2)).expect("parse");
        let second = RecordBatch::parse(batch(Compression::None, 2, 1)).expect("parse");
        for b in [first, second] {
            builder
                .add_batch(TopicId([partition as u8 + 1; 16]), partition, &b)
                .expect("add");
        }
    }
    builder.finish().0
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn seeds_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds")
}

fn seed_files(target: &str) -> Vec<(String, Bytes)> {
    let dir = seeds_dir().join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, Bytes::from(std::fs::read(&path).expect("read seed")))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

#[test]
fn committed_seeds_decode() {
    if std::env::var_os("SHALE_WRITE_FUZZ_SEEDS").is_some() {
        write_fuzz_seeds();
    }
    for (name, bytes) in seed_files("batch_decode") {
        let batch = RecordBatch::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        batch.verify().unwrap_or_else(|e| panic!("{name}: {e}"));
        batch
            .records_with_limit(1 << 20)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for target in ["segment_decode", "segment_ranged_read"] {
        for (name, bytes) in seed_files(target) {
            let segment = Segment::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            for meta in segment.chunks() {
                for batch in segment.batches(meta) {
                    batch
                        .unwrap_or_else(|e| panic!("{name}: {e}"))
                        .records_with_limit(1 << 20)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
    }
}

fn write_fuzz_seeds() {
    let seeds = seeds_dir();
    for codec in Compression::ALL {
        let one = batch(codec, 0, 3);
        write(&seeds.join("batch_decode"), &format!("{codec}.bin"), &one);
        let two = [batch(codec, 0, 2), batch(Compression::None, 2, 1)].concat();
        write(&seeds.join("batch_iter"), &format!("{codec}.bin"), &two);
    }
    // A truncated tail, as fetch responses may end.
    let cut = [
        batch(Compression::None, 0, 1),
        batch(Compression::None, 1, 2),
    ]
    .concat();
    write(
        &seeds.join("batch_iter"),
        "truncated.bin",
        &cut[..cut.len() - 5],
    );
    for partitions in [0, 1, 5] {
        let object = segment(partitions);
        write(
            &seeds.join("segment_decode"),
            &format!("{partitions}p.bin"),
            &object,
        );
        write(
            &seeds.join("segment_ranged_read"),
            &format!("{partitions}p.bin"),
            &object,
        );
    }
}
