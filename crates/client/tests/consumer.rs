//! The partition follower against a scripted LogService that breaks its streams.

mod support;

use shale_client::Client;
use support::MockLog;

#[tokio::test(start_paused = false)]
async fn the_consumer_reopens_at_its_position_and_skips_duplicates() {
    let mock = MockLog {
        records: 7,
        fail_fetch_after: 2,
        ..MockLog::new()
    };
    let state = mock.state.clone();
    let addr = mock.serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let mut consumer = client.consumer("t", 0, 0);

    let mut offsets = Vec::new();
    while offsets.len() < 7 {
        let batch = consumer.next_batch().await.unwrap();
        offsets.extend(batch.records.iter().map(|record| record.offset));
    }
    assert_eq!(offsets, (0..7).collect::<Vec<_>>());
    assert_eq!(consumer.position(), 7);
    assert_eq!(consumer.high_watermark(), Some(7));
    // Each reopen starts where the last returned record left off.
    assert_eq!(*state.fetch_opens.lock().unwrap(), vec![0, 4]);
}

#[tokio::test]
async fn retries_are_bounded() {
    let mock = MockLog {
        records: 10,
        fail_fetch_after: 0,
        ..MockLog::new()
    };
    let addr = mock.serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let mut consumer = client.consumer("t", 0, 0).with_max_retries(1);
    let error = consumer.next_batch().await.unwrap_err();
    assert_eq!(error.to_string(), "leader moved");
    assert_eq!(consumer.position(), 0);
}
