//! TLS and password authentication towards a real etcd: the store connects and works with the
//! right CA, client certificate or password, and fails at connect, saying why, without them.

use std::time::Duration;

use shale_meta::{
    EtcdCredentials, EtcdOptions, EtcdStore, EtcdTls, MetaError, MetaMetrics, MetaStore,
};
use shale_testkit::{Etcd, EtcdTlsFiles, TestPki};

fn pem(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).expect("read test pem")
}

async fn start_tls(pki: &TestPki, client_ca: bool) -> Etcd {
    let files = EtcdTlsFiles {
        cert_file: pki.server_cert_file.clone(),
        key_file: pki.server_key_file.clone(),
        client_ca_file: client_ca.then(|| pki.ca_file.clone()),
    };
    tokio::task::spawn_blocking(move || Etcd::start_tls(&files).expect("start etcd with tls"))
        .await
        .expect("start etcd")
}

fn options(tls: Option<EtcdTls>, credentials: Option<EtcdCredentials>) -> EtcdOptions {
    EtcdOptions {
        // A refused handshake must fail fast, not after a long timeout.
        connect_timeout: Duration::from_secs(3),
        tls,
        credentials,
        ..EtcdOptions::default()
    }
}

async fn connect(etcd: &Etcd, options: EtcdOptions) -> Result<EtcdStore, MetaError> {
    EtcdStore::connect(&[etcd.endpoint()], options, MetaMetrics::unregistered()).await
}

async fn round_trip(store: &EtcdStore) {
    store.put(b"/tls/k", b"v").await.expect("put");
    let got = store
        .get(b"/tls/k")
        .await
        .expect("get")
        .expect("key present");
    assert_eq!(got.value, b"v");
}

#[tokio::test]
async fn tls_connects_with_the_ca_and_fails_clearly_without_it() {
    let pki = TestPki::new().expect("mint certificates");
    let etcd = start_tls(&pki, false).await;
    assert!(
        etcd.endpoint().starts_with("https://"),
        "{}",
        etcd.endpoint()
    );

    let trusted = EtcdTls {
        ca_pem: pem(&pki.ca_file),
        client: None,
    };
    let store = connect(&etcd, options(Some(trusted), None))
        .await
        .expect("connect over tls with the ca");
    round_trip(&store).await;

    // Another CA: the handshake is refused and the error says why.
    let untrusted = EtcdTls {
        ca_pem: pem(&pki.other_ca_file),
        client: None,
    };
    let error = connect(&etcd, options(Some(untrusted), None))
        .await
        .expect_err("an unknown issuer must be refused");
    let message = error.to_string();
    assert_eq!(
        message,
        "metadata store unavailable: etcd transport: invalid peer certificate: UnknownIssuer"
    );

    // Without a CA nothing is trusted: etcd's certificate is refused the same way.
    let error = connect(&etcd, options(None, None))
        .await
        .expect_err("https endpoint without tls settings");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let pki = TestPki::new().expect("mint certificates");
    let etcd = start_tls(&pki, true).await;
    let with_client = EtcdTls {
        ca_pem: pem(&pki.ca_file),
        client: Some((pem(&pki.client_cert_file), pem(&pki.client_key_file))),
    };
    let store = connect(&etcd, options(Some(with_client), None))
        .await
        .expect("connect with a client certificate");
    round_trip(&store).await;

    let without_client = EtcdTls {
        ca_pem: pem(&pki.ca_file),
        client: None,
    };
    let error = connect(&etcd, options(Some(without_client), None))
        .await
        .expect_err("etcd requires a client certificate");
    let message = error.to_string();
    // The cause is "connection closed" or the alert itself, depending on which arrives first.
    assert!(
        message.starts_with("metadata store unavailable: etcd transport: ")
            && message.ends_with(
                "if etcd checks client certificates (--client-cert-auth), set a client certificate and key"
            ),
        "{message}"
    );
}

#[tokio::test]
async fn password_auth_works_with_the_right_password_only() {
    let etcd = tokio::task::spawn_blocking(shale_testkit::etcd)
        .await
        .expect("start etcd");
    etcd.enable_auth("right-pw").expect("enable etcd auth");

    let credentials = |password: &str| EtcdCredentials {
        user: "root".to_owned(),
        password: password.to_owned(),
    };
    let store = connect(&etcd, options(None, Some(credentials("right-pw"))))
        .await
        .expect("connect with the right password");
    round_trip(&store).await;
    let lease = store
        .lease_grant(Duration::from_secs(5))
        .await
        .expect("lease with auth");
    store
        .lease_keep_alive(lease.id)
        .await
        .expect("keep alive with auth");

    let error = connect(&etcd, options(None, Some(credentials("wrong-pw"))))
        .await
        .expect_err("a wrong password must be refused");
    let message = error.to_string();
    assert!(
        message.contains("etcd refused user \"root\"") && message.contains("authentication failed"),
        "{message}"
    );
    assert!(
        !message.contains("wrong-pw"),
        "the password leaked: {message}"
    );

    // Without credentials the connect probe is refused too.
    let error = connect(&etcd, options(None, None))
        .await
        .expect_err("auth is on, so anonymous reads are refused");
    assert!(error.to_string().contains("user"), "{error}");
}

/// A user allowed only its own prefix (what an operator should give Shale) connects, although
/// it may not read the connect probe's key, and works inside its prefix only.
#[tokio::test]
async fn a_user_limited_to_its_prefix_connects_and_works_there() {
    let etcd = tokio::task::spawn_blocking(shale_testkit::etcd)
        .await
        .expect("start etcd");
    for args in [
        &["role", "add", "shale-rw"][..],
        &[
            "role",
            "grant-permission",
            "shale-rw",
            "--prefix=true",
            "readwrite",
            "/shale/",
        ],
        &["user", "add", "shale:limited-pw"],
        &["user", "grant-role", "shale", "shale-rw"],
    ] {
        etcd.etcdctl(args).expect("set up the limited user");
    }
    etcd.enable_auth("root-pw").expect("enable etcd auth");
    let store = connect(
        &etcd,
        options(
            None,
            Some(EtcdCredentials {
                user: "shale".to_owned(),
                password: "limited-pw".to_owned(),
            }),
        ),
    )
    .await
    .expect("a limited user connects");
    store
        .put(b"/shale/k", b"v")
        .await
        .expect("put in its prefix");
    let got = store.get(b"/shale/k").await.expect("get").expect("present");
    assert_eq!(got.value, b"v");
    let lease = store
        .lease_grant(Duration::from_secs(5))
        .await
        .expect("lease");
    store
        .lease_revoke(lease.id)
        .await
        .expect("revoke a lease without keys");
    let outside = store.put(b"/other/k", b"v").await;
    assert!(
        outside
            .as_ref()
            .is_err_and(|error| error.to_string().contains("permission denied")),
        "{outside:?}"
    );
}

/// etcd forgets an auth token that goes unused for `--auth-token-ttl`; an agent whose only
/// traffic was its watch and keep-alive streams would then fail its next commit.
#[tokio::test]
async fn an_expired_auth_token_is_renewed() {
    let etcd = tokio::task::spawn_blocking(|| Etcd::start_with_args(&["--auth-token-ttl", "1"]))
        .await
        .expect("join")
        .expect("start etcd");
    etcd.enable_auth("pw").expect("enable etcd auth");
    let credentials = EtcdCredentials {
        user: "root".to_owned(),
        password: "pw".to_owned(),
    };
    let store = connect(&etcd, options(None, Some(credentials)))
        .await
        .expect("connect with the password");
    round_trip(&store).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    store
        .put(b"/tls/after", b"idle")
        .await
        .expect("a request after the token expired");
}

#[test]
fn debug_never_shows_the_password_or_key() {
    let options = EtcdOptions {
        tls: Some(EtcdTls {
            ca_pem: b"ca".to_vec(),
            client: Some((b"cert".to_vec(), b"SECRET-KEY-BYTES".to_vec())),
        }),
        credentials: Some(EtcdCredentials {
            user: "root".to_owned(),
            password: "hunter2".to_owned(),
        }),
        ..EtcdOptions::default()
    };
    let shown = format!("{options:?}");
    assert!(shown.contains("root"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("SECRET"), "{shown}");
}
