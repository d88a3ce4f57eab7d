//! Encode and decode+verify of batches of 1 KiB records per codec, and building a segment
//! of 1,000 partitions.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shale_common::TopicId;
use shale_format::{
    BatchOptions, Compression, Record, RecordBatch, Segment, SegmentBuilder, encode_batch,
};

const RECORDS: usize = 100;

fn records() -> Vec<Record> {
    // Semi-compressible values: a repeating text with a varying counter.
    (0..RECORDS)
        .map(|i| {
            let value: Vec<u8> = format!("record {i:08} ")
                .bytes()
                .cycle()
                .take(1024)
                .collect();
            Record {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(value)),
                headers: vec![],
                timestamp_ms: 1_700_000_000_000 + i as i64,
            }
        })
        .collect()
}

fn batches(c: &mut Criterion) {
    let records = records();
    for codec in Compression::ALL {
        let options = BatchOptions {
            compression: codec,
            ..BatchOptions::default()
        };
        let mut group = c.benchmark_group(format!("batch/{codec}"));
        group.throughput(Throughput::Bytes((RECORDS * 1024) as u64));
        group.bench_function("encode", |b| {
            b.iter(|| encode_batch(black_box(&records), &options).expect("encode"));
        });
        let encoded = encode_batch(&records, &options).expect("encode");
        group.bench_function("decode_verify", |b| {
            b.iter(|| {
                let batch = RecordBatch::parse(black_box(encoded.clone())).expect("parse");
                batch.records().expect("decode")
            });
        });
        group.finish();
    }
}

fn segments(c: &mut Criterion) {
    let batch = RecordBatch::parse(
        encode_batch(&records()[..4], &BatchOptions::default()).expect("encode"),
    )
    .expect("parse");
    let topic = TopicId([7; 16]);
    let mut group = c.benchmark_group("segment");
    group.bench_function("build_1000_partitions", |b| {
        b.iter(|| {
            let mut builder = SegmentBuilder::new();
            for partition in 0..1000 {
                builder.add_batch(topic, partition, &batch).expect("add");
            }
            builder.finish()
        });
    });
    let mut builder = SegmentBuilder::new();
    for partition in 0..1000 {
        builder.add_batch(topic, partition, &batch).expect("add");
    }
    let (object, _) = builder.finish();
    group.throughput(Throughput::Bytes(object.len() as u64));
    group.bench_function("decode_1000_partitions", |b| {
        b.iter(|| Segment::decode(black_box(object.clone())).expect("decode"));
    });
    group.finish();
}

criterion_group!(benches, batches, segments);
criterion_main!(benches);
