//! The harness itself: servers start healthy on 127.0.0.1 and are gone after drop.

use std::net::TcpStream;

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .expect("endpoint has a port")
        .parse()
        .expect("numeric port")
}

fn pid_alive(pid: u32) -> bool {
    // A reaped process has no /proc entry.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn etcd_starts_and_stops_by_pid() {
    let etcd = shale_testkit::etcd();
    let pid = etcd.pid();
    assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
    assert!(TcpStream::connect(etcd.host_port()).is_ok());
    assert!(pid_alive(pid));
    drop(etcd);
    assert!(!pid_alive(pid), "etcd pid {pid} still running after drop");
}

#[tokio::test]
async fn moto_starts_creates_buckets_and_stops() {
    let s3 = shale_testkit::moto();
    let pid = s3.pid();
    s3.create_bucket("shale-testkit").await.unwrap();
    let buckets = s3.client().list_buckets().send().await.unwrap();
    let names: Vec<_> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["shale-testkit"]);
    assert!(
        s3.store_url("shale-testkit", "p")
            .starts_with("s3://shale-testkit/p?endpoint=http://127.0.0.1:")
    );
    let port = port_of(&s3.endpoint());
    drop(s3);
    assert!(!pid_alive(pid));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn servers_are_stopped_when_a_test_panics() {
    let mut pid = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let etcd = shale_testkit::etcd();
        pid = etcd.pid();
        panic!("test failure while etcd runs");
    }));
    assert!(result.is_err());
    assert_ne!(pid, 0);
    assert!(!pid_alive(pid), "etcd pid {pid} survived a panicking test");
}

#[test]
fn missing_binary_says_how_to_install() {
    let error = shale_testkit::find_binary(
        "shale-no-such-binary",
        "SHALE_TEST_NO_SUCH_BINARY",
        "sudo apt-get install -y shale-no-such-binary",
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("shale-no-such-binary not found"),
        "{message}"
    );
    assert!(
        message.contains("sudo apt-get install -y shale-no-such-binary"),
        "{message}"
    );
}
