//! The pipelined producer against a scripted LogService.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use shale_client::{Client, ClientError, Code, ProduceRequest, ProducerOptions, Record};
use support::MockLog;

fn request(topic: &str, records: usize) -> ProduceRequest {
    ProduceRequest::new(topic, (0..records).map(|i| Record::new(format!("r{i}"))))
}

#[tokio::test]
async fn acks_resolve_in_order_with_consecutive_offsets() {
    let addr = MockLog::new().serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let producer = client.producer(ProducerOptions::default()).await.unwrap();
    let acks: Vec<_> = (0..50).map(|_| producer.send(request("t", 3))).collect();
    for (i, ack) in acks.into_iter().enumerate() {
        let ack = ack.await.unwrap();
        assert_eq!(ack.partitions[0].base_offset, i as i64 * 3);
        assert_eq!(ack.record_count(), 3);
    }
    producer.flush().await;
    assert_eq!(producer.pending(), 0);
}

#[tokio::test]
async fn in_flight_requests_are_bounded() {
    let mock = MockLog::new().gated();
    let (state, answers) = (mock.state.clone(), mock.answers.clone());
    let addr = mock.serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let producer = client
        .producer(ProducerOptions { max_in_flight: 4 })
        .await
        .unwrap();
    let acks: Vec<_> = (0..10).map(|_| producer.send(request("t", 1))).collect();
    assert_eq!(producer.pending(), 10);

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        state.received.load(Ordering::SeqCst),
        4,
        "only the window goes out"
    );

    answers.add_permits(10);
    for (i, ack) in acks.into_iter().enumerate() {
        assert_eq!(ack.await.unwrap().partitions[0].base_offset, i as i64);
    }
    assert_eq!(state.received.load(Ordering::SeqCst), 10);
    tokio::time::timeout(Duration::from_secs(5), producer.ready())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_request_fails_only_its_own_future() {
    let addr = MockLog::new().serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let producer = client.producer(ProducerOptions::default()).await.unwrap();
    let first = producer.send(request("t", 1));
    let failed = producer.send(request("missing", 1));
    let last = producer.send(request("t", 2));

    assert_eq!(first.await.unwrap().partitions[0].base_offset, 0);
    let error = failed.await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(error.to_string(), "topic \"missing\" does not exist");
    assert!(error.has_no_side_effects());
    assert_eq!(last.await.unwrap().partitions[0].base_offset, 1);
}

#[tokio::test]
async fn invalid_requests_fail_without_taking_a_slot() {
    let addr = MockLog::new().serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let producer = client.producer(ProducerOptions::default()).await.unwrap();
    let error = producer
        .send(request("t", 1).with_expected_next_offset(0))
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::InvalidRequest(_)), "{error:?}");
    assert_eq!(producer.pending(), 0);
}

#[tokio::test]
async fn a_broken_stream_fails_every_pending_future() {
    let mock = MockLog::new().gated();
    let answers = mock.answers.clone();
    let addr = mock.serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let producer = client
        .producer(ProducerOptions { max_in_flight: 2 })
        .await
        .unwrap();
    let ok = producer.send(request("t", 1));
    let breaks = producer.send(request("break", 1));
    // Queued behind the window: never sent.
    let queued = producer.send(request("t", 1));
    answers.add_permits(2);

    assert!(ok.await.is_ok());
    let error = breaks.await.unwrap_err();
    assert!(
        matches!(error, ClientError::StreamBroken { sent: true, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("agent is shutting down"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .ends_with("(it may or may not have been written)")
    );
    assert!(!error.has_no_side_effects());
    assert!(error.is_retryable());

    let error = queued.await.unwrap_err();
    assert!(
        matches!(error, ClientError::StreamBroken { sent: false, .. }),
        "{error:?}"
    );
    assert!(error.has_no_side_effects());

    // Later sends fail at once with the same cause.
    let error = producer.send(request("t", 1)).await.unwrap_err();
    assert!(
        error.to_string().contains("agent is shutting down"),
        "{error}"
    );
    assert!(producer.broken().is_some());
}

#[tokio::test]
async fn dropping_the_producer_still_answers_what_was_sent() {
    let addr = MockLog::new().serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let producer = client.producer(ProducerOptions::default()).await.unwrap();
    let acks: Vec<_> = (0..5).map(|_| producer.send(request("t", 1))).collect();
    drop(producer);
    for ack in acks {
        ack.await.unwrap();
    }
}
