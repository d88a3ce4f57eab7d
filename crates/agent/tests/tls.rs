//! TLS on the agent's gRPC listener, and TLS and password authentication towards etcd,
//! against real agents with certificates minted at test time: the SDK talks over https with
//! the CA, and the handshake is refused, saying why, without it; mutual TLS accepts a client
//! certificate and refuses a client without one; TLS settings that cannot work stop the start.

use std::path::PathBuf;
use std::time::Duration;

use shale_agent::{AgentConfig, RunningAgent, Secret};
use shale_client::{
    Client, ClientError, ClientOptions, ClientTls, Code, FetchOptions, ProduceRequest, Record,
};
use shale_testkit::{EtcdTlsFiles, TestPki};

/// An agent on the embedded store and a folder, with `tls` applied to its config.
async fn start_agent(dir: &tempfile::TempDir, tls: impl FnOnce(&mut AgentConfig)) -> RunningAgent {
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).expect("objects dir");
    let mut config = AgentConfig {
        agent_id: "tls-test".to_owned(),
        metadata: format!("file://{}", dir.path().join("meta").display()),
        object_store: format!("file://{}", objects.display()),
        ..base_config(dir)
    };
    tls(&mut config);
    let agent = RunningAgent::start(config).await.expect("agent starts");
    wait_ready(&agent).await;
    agent
}

fn base_config(dir: &tempfile::TempDir) -> AgentConfig {
    AgentConfig {
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        cache_dir: dir.path().join("cache"),
        cache_size: bytesize::ByteSize::mib(64),
        cache_memory: bytesize::ByteSize::mib(16),
        flush_interval: Duration::from_millis(20),
        ..AgentConfig::default()
    }
}

async fn wait_ready(agent: &RunningAgent) {
    for _ in 0..400 {
        if agent.log().is_ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("agent did not register");
}

fn client_tls(ca: Option<&PathBuf>, client: Option<(&PathBuf, &PathBuf)>) -> ClientOptions {
    ClientOptions {
        tls: ClientTls::from_files(
            ca.map(PathBuf::as_path),
            client.map(|(cert, _)| cert.as_path()),
            client.map(|(_, key)| key.as_path()),
        )
        .expect("read client tls files"),
        ..ClientOptions::default()
    }
}

/// Creates a topic, produces one record and reads it back: the whole API works.
async fn produce_and_fetch(client: &Client, topic: &str) -> Result<(), ClientError> {
    client
        .create_topic(topic, 1, std::collections::BTreeMap::default())
        .await?;
    let ack = client
        .produce(ProduceRequest::new(topic, [Record::new("over tls")]).with_partition(0))
        .await?;
    assert_eq!(ack.partitions[0].base_offset, 0);
    let fetched = client.fetch(topic, 0, 0, FetchOptions::default()).await?;
    assert_eq!(fetched.records[0].value.as_deref(), Some(&b"over tls"[..]));
    Ok(())
}

/// A connect, or the first call on the connection (TLS 1.3 clients learn that their
/// certificate was refused only after the handshake), must fail with this error.
async fn expect_refused(addr: &str, options: ClientOptions) -> ClientError {
    let error = match Client::connect_with(addr, options).await {
        Err(error) => error,
        Ok(client) => client
            .list_topics()
            .await
            .expect_err("the agent must refuse this client"),
    };
    assert!(
        matches!(error, ClientError::TlsHandshake { .. }),
        "{error:?}"
    );
    assert_eq!(error.code(), Code::Unauthenticated);
    assert!(!error.is_retryable() && error.has_no_side_effects());
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_works_with_the_ca_file_and_is_refused_without_it() {
    let pki = TestPki::new().expect("mint certificates");
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start_agent(&dir, |config| {
        config.tls_cert_file = Some(pki.server_cert_file.clone());
        config.tls_key_file = Some(pki.server_key_file.clone());
    })
    .await;
    let addr = agent.grpc_url();
    assert!(addr.starts_with("https://127.0.0.1:"), "{addr}");

    let client = Client::connect_with(&addr, client_tls(Some(&pki.ca_file), None))
        .await
        .expect("connect with the ca file");
    produce_and_fetch(&client, "secure")
        .await
        .expect("api over tls");

    // Neither the system's roots nor an unrelated CA trust the test CA.
    for options in [
        ClientOptions::default(),
        client_tls(Some(&pki.other_ca_file), None),
    ] {
        let error = expect_refused(&addr, options).await;
        assert_eq!(
            error.to_string(),
            format!(
                "tls handshake with shale agent at {addr} failed: invalid peer certificate: UnknownIssuer (the agent's certificate is not signed by a trusted CA: add its CA as a trust root)"
            )
        );
    }
    // Plaintext against the TLS listener gets nowhere either.
    let plain = addr.replace("https://", "http://");
    if let Ok(client) = Client::connect(&plain).await {
        client
            .list_topics()
            .await
            .expect_err("plaintext is refused");
    }
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_a_client_certificate_and_refuses_none() {
    let pki = TestPki::new().expect("mint certificates");
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = start_agent(&dir, |config| {
        config.tls_cert_file = Some(pki.server_cert_file.clone());
        config.tls_key_file = Some(pki.server_key_file.clone());
        config.tls_client_ca_file = Some(pki.ca_file.clone());
    })
    .await;
    let addr = agent.grpc_url();

    let client = Client::connect_with(
        &addr,
        client_tls(
            Some(&pki.ca_file),
            Some((&pki.client_cert_file, &pki.client_key_file)),
        ),
    )
    .await
    .expect("connect with a client certificate");
    produce_and_fetch(&client, "mutual")
        .await
        .expect("api over mutual tls");

    // The agent asks for a certificate in the handshake; without one the connect fails
    // at once instead of the first call breaking on a closed connection.
    let error = Client::connect_with(&addr, client_tls(Some(&pki.ca_file), None))
        .await
        .expect_err("the agent requires a client certificate");
    assert_eq!(
        error.to_string(),
        format!(
            "tls handshake with shale agent at {addr} failed: the agent requires a client certificate signed by a CA it trusts, and none is configured"
        )
    );
    assert_eq!(error.code(), Code::Unauthenticated);
    assert!(!error.is_retryable() && error.has_no_side_effects());
    // A certificate of another CA is refused at connect too, with the agent's reason.
    let foreign = TestPki::new().expect("mint other certificates");
    let error = Client::connect_with(
        &addr,
        client_tls(
            Some(&pki.ca_file),
            Some((&foreign.client_cert_file, &foreign.client_key_file)),
        ),
    )
    .await
    .expect_err("a certificate of another CA is refused");
    assert!(
        matches!(error, ClientError::TlsHandshake { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "tls handshake with shale agent at {addr} failed: the agent refused this client certificate (received fatal alert: "
        )) && message.ends_with("); it must be signed by a CA the agent trusts"),
        "{message}"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_settings_stop_the_start() {
    let pki = TestPki::new().expect("mint certificates");
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not pem at all").expect("write");
    let missing = dir.path().join("missing.pem");
    let start = |cert: Option<&PathBuf>, key: Option<&PathBuf>, client_ca: Option<&PathBuf>| {
        let config = AgentConfig {
            metadata: format!("file://{}", dir.path().join("meta").display()),
            object_store: "memory://".to_owned(),
            tls_cert_file: cert.cloned(),
            tls_key_file: key.cloned(),
            tls_client_ca_file: client_ca.cloned(),
            ..base_config(&dir)
        };
        async move {
            RunningAgent::start(config)
                .await
                .expect_err("the agent must refuse to start")
                .to_string()
        }
    };
    let cert = Some(&pki.server_cert_file);
    let key = Some(&pki.server_key_file);
    let cases = [
        (
            start(cert, None, None).await,
            "invalid configuration: tls_cert_file is set but tls_key_file is not; set both or neither".to_owned(),
        ),
        (
            start(None, key, None).await,
            "invalid configuration: tls_key_file is set but tls_cert_file is not; set both or neither".to_owned(),
        ),
        (
            start(None, None, Some(&pki.ca_file)).await,
            "invalid configuration: tls_client_ca_file needs tls_cert_file and tls_key_file".to_owned(),
        ),
        (
            start(Some(&missing), key, None).await,
            format!("invalid configuration: cannot read tls_cert_file {}: No such file", missing.display()),
        ),
        (
            start(Some(&garbage), key, None).await,
            format!("invalid configuration: tls_cert_file {} holds no PEM certificate", garbage.display()),
        ),
        (
            // The certificate where the key should be.
            start(cert, cert, None).await,
            format!(
                "invalid configuration: tls_key_file {} holds no usable PEM private key",
                pki.server_cert_file.display()
            ),
        ),
        (
            start(cert, key, Some(&garbage)).await,
            format!("invalid configuration: tls_client_ca_file {} holds no PEM certificate", garbage.display()),
        ),
    ];
    for (error, expected) in cases {
        assert!(
            error.starts_with(&expected),
            "expected {expected:?}, got {error:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reaches_etcd_over_mutual_tls() {
    let pki = TestPki::new().expect("mint certificates");
    let files = EtcdTlsFiles {
        cert_file: pki.server_cert_file.clone(),
        key_file: pki.server_key_file.clone(),
        client_ca_file: Some(pki.ca_file.clone()),
    };
    let etcd = tokio::task::spawn_blocking(move || shale_testkit::Etcd::start_tls(&files))
        .await
        .expect("join")
        .expect("start etcd with tls");
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd_config = || AgentConfig {
        metadata: format!("etcd://{}", etcd.host_port()),
        object_store: "memory://".to_owned(),
        etcd_ca_file: Some(pki.ca_file.clone()),
        etcd_cert_file: Some(pki.client_cert_file.clone()),
        etcd_key_file: Some(pki.client_key_file.clone()),
        ..base_config(&dir)
    };
    let agent = RunningAgent::start(etcd_config())
        .await
        .expect("agent starts");
    wait_ready(&agent).await;
    agent.shutdown().await;

    // Without the client certificate etcd refuses the agent, and the start says so.
    let error = RunningAgent::start(AgentConfig {
        etcd_cert_file: None,
        etcd_key_file: None,
        ..etcd_config()
    })
    .await
    .expect_err("etcd requires a client certificate")
    .to_string();
    assert!(
        error.starts_with(&format!(
            "cannot reach etcd at etcd://{}: ",
            etcd.host_port()
        )) && error.contains("set a client certificate and key"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_logs_in_to_etcd_with_its_password() {
    let etcd = tokio::task::spawn_blocking(shale_testkit::etcd)
        .await
        .expect("start etcd");
    etcd.enable_auth("s3cret-pw").expect("enable etcd auth");
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd_config = |password: &str| AgentConfig {
        metadata: format!("etcd://{}", etcd.host_port()),
        object_store: "memory://".to_owned(),
        etcd_user: Some("root".to_owned()),
        etcd_password: Some(Secret::new(password)),
        ..base_config(&dir)
    };
    let config = etcd_config("s3cret-pw");
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret-pw"), "the password leaked: {shown}");
    let agent = RunningAgent::start(config).await.expect("agent starts");
    wait_ready(&agent).await;
    agent.shutdown().await;

    let error = RunningAgent::start(etcd_config("wrong-pw"))
        .await
        .expect_err("a wrong password is refused")
        .to_string();
    assert!(
        error.contains("etcd refused user \"root\": etcdserver: authentication failed"),
        "{error}"
    );
    assert!(!error.contains("wrong-pw"), "the password leaked: {error}");
}
