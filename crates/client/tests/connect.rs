//! Connecting to an address where nothing listens fails at once with a one-line message.

use shale_client::{Client, Code};

#[tokio::test]
async fn a_closed_port_is_reported_as_unreachable() {
    // Bind and drop to find a port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);

    let addr = format!("http://127.0.0.1:{port}");
    let error = Client::connect(&addr).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("cannot reach shale agent at {addr}: connection refused")
    );
    assert_eq!(error.code(), Code::Unavailable);
    assert!(error.is_retryable());
    assert!(error.has_no_side_effects());
}

#[tokio::test]
async fn a_malformed_address_is_rejected_before_dialling() {
    let error = Client::connect("http://[bad").await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid shale agent address \"http://[bad\""),
        "{error}"
    );
}
