//! Three `shale agent` processes over one etcd and one moto, under continuous produce from
//! idempotent producers and tailing reads, while a random agent is killed with SIGKILL again
//! and again (and restarted, at once or after its lease ran out) or frozen with SIGSTOP past
//! its lease and woken; while every agent is restarted in turn with SIGTERM; and while etcd
//! is paused, for less than the agents' lease TTL (no partition may move) and for more (each
//! partition is claimed once again, by its previous leader). Then every
//! partition is read back and checked:
//!
//! - offsets are dense from 0 to the high watermark;
//! - every acknowledged record is there exactly once, at the offset its ack named, and each
//!   producer's records are in the order it sent them;
//! - nothing is there that was never sent;
//! - every tailing reader saw a gap-free prefix of the same log.
//!
//! `SHALE_CHAOS_CYCLES` sets the number of kills (default 20, what CI runs); a long soak is
//! `SHALE_CHAOS_CYCLES=500 cargo test -p shale-cli --test cluster -- --nocapture`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shale_client::{
    Client, ClientError, FetchOptions, ProduceRequest, ProducerIdentity, Record, StoredRecord,
};
use shale_testkit::{ChildGuard, Etcd, S3Server};

const TOPIC: &str = "chaos";
const PARTITIONS: u32 = 6;
const AGENTS: usize = 3;
const RECORDS_PER_REQUEST: i32 = 4;
/// Short, so a killed agent's partitions move within the test's patience.
const LEASE_TTL: &str = "2s";

/// One agent process of the cluster.
struct Node {
    id: String,
    dir: PathBuf,
    process: Option<ChildGuard>,
    starts: u32,
}

struct Cluster {
    nodes: Vec<Node>,
    /// The gRPC address of each node while it runs.
    addrs: Arc<Mutex<Vec<Option<String>>>>,
    dir: tempfile::TempDir,
    // Dropped last: the servers outlive the agents.
    etcd: Etcd,
    s3: S3Server,
}

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let etcd = shale_testkit::etcd();
        let s3 = shale_testkit::moto();
        let nodes = (0..AGENTS)
            .map(|index| Node {
                id: format!("chaos-{index}"),
                dir: dir.path().join(format!("agent-{index}")),
                process: None,
                starts: 0,
            })
            .collect();
        let mut cluster = Self {
            nodes,
            addrs: Arc::new(Mutex::new(vec![None; AGENTS])),
            dir,
            etcd,
            s3,
        };
        for index in 0..AGENTS {
            cluster.launch(index);
        }
        cluster
    }

    fn launch(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.starts += 1;
        let command = self.command(&self.nodes[index].id, &self.nodes[index].dir);
        let node = &mut self.nodes[index];
        let log = node.dir.join(format!("agent-{}.log", node.starts));
        std::fs::create_dir_all(&node.dir).unwrap();
        let (process, grpc, _http) = support::spawn_agent(&node.id, command, &log);
        node.process = Some(process);
        self.addrs.lock().unwrap()[index] = Some(grpc);
    }

    /// The `shale agent` command of agent `id` keeping its cache under `dir`.
    fn command(&self, id: &str, dir: &std::path::Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shale"));
        command
            .arg("agent")
            .env_remove("SHALE_ADDR")
            .env("RUST_LOG", "info")
            .env("SHALE_LEASE_TTL", LEASE_TTL)
            .env("SHALE_GROUP_MIN_SESSION_TIMEOUT", "500ms")
            .env("SHALE_GROUP_INITIAL_REBALANCE_DELAY", "300ms")
            .args(["--flush-interval", "20ms", "--cache-size", "64MiB"])
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(["--agent-id", id])
            .arg("--metadata")
            .arg(format!("etcd://{}", self.etcd.host_port()))
            .arg("--object-store")
            .arg(self.s3.store_url("shale-chaos", "cluster"))
            .arg("--create-bucket")
            .arg("--cache-dir")
            .arg(dir.join("cache"));
        command
    }

    /// SIGTERM, and waits for the process to exit.
    fn stop(&mut self, index: usize) {
        self.addrs.lock().unwrap()[index] = None;
        if let Some(process) = self.nodes[index].process.take() {
            support::terminate(process);
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to a node's process.
    fn signal(&self, index: usize, signal: &str) {
        send_signal(self.nodes[index].process.as_ref().unwrap().pid(), signal);
    }

    fn kill9(&mut self, index: usize) {
        self.addrs.lock().unwrap()[index] = None;
        if let Some(mut process) = self.nodes[index].process.take() {
            process.kill();
        }
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|node| {
                node.process
                    .as_ref()
                    .map(|p| format!("--- {}\n{}", node.id, p.log_tail()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Clients of the live agents, by address, made once each.
#[derive(Clone, Default)]
struct Clients(Arc<Mutex<HashMap<String, Client>>>);

impl Clients {
    /// A client of some live agent, rotating with `turn`.
    async fn any(&self, addrs: &Mutex<Vec<Option<String>>>, turn: usize) -> Option<Client> {
        let live: Vec<String> = addrs.lock().unwrap().iter().flatten().cloned().collect();
        if live.is_empty() {
            return None;
        }
        let addr = live[turn % live.len()].clone();
        if let Some(client) = self.0.lock().unwrap().get(&addr) {
            return Some(client.clone());
        }
        let client = Client::connect(&addr).await.ok()?;
        self.0.lock().unwrap().insert(addr, client.clone());
        Some(client)
    }
}

/// What one producer had acknowledged: (value, offset) in send order.
type Acked = Vec<(String, i64)>;

/// Sends requests of [`RECORDS_PER_REQUEST`] records to one partition as one idempotent
/// producer, retrying each request (same sequence) on any retryable error until it is
/// acknowledged, until `stop`. Returns what was acknowledged and the longest wait for an ack.
async fn produce(
    partition: u32,
    addrs: Arc<Mutex<Vec<Option<String>>>>,
    clients: Clients,
    stop: Arc<AtomicBool>,
) -> (Acked, Duration) {
    let mut acked = Acked::new();
    let mut sequence = 0i32;
    let mut turn = partition as usize;
    let mut longest = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        let values: Vec<String> = (0..RECORDS_PER_REQUEST)
            .map(|i| format!("p{partition}-s{}", sequence + i))
            .collect();
        let request =
            ProduceRequest::new(TOPIC, values.iter().map(|value| Record::new(value.clone())))
                .with_partition(partition)
                .with_producer(ProducerIdentity {
                    producer_id: 1000 + i64::from(partition),
                    producer_epoch: 0,
                    base_sequence: sequence,
                });
        let started = Instant::now();
        let ack = loop {
            turn += 1;
            let Some(client) = clients.any(&addrs, turn).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match client.produce(request.clone()).await {
                Ok(ack) => break ack,
                Err(error) if retryable(&error) => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(error) => panic!("partition {partition}, sequence {sequence}: {error}"),
            }
        };
        longest = longest.max(started.elapsed());
        let part = &ack.partitions[0];
        assert_eq!(part.partition, partition);
        assert_eq!(part.record_count, RECORDS_PER_REQUEST as u32);
        for (i, value) in values.into_iter().enumerate() {
            acked.push((value, part.base_offset + i as i64));
        }
        sequence += RECORDS_PER_REQUEST;
    }
    (acked, longest)
}

/// Errors a producer rides out while agents die: the agent went away, the partition is
/// between leaders, or the write's outcome is unknown (the idempotent retry settles it).
fn retryable(error: &ClientError) -> bool {
    error.is_retryable() || error.outcome_unknown()
}

/// Follows one partition from offset 0 through whichever agents are up, checking that the
/// offsets it receives are exactly the next ones. Returns the values it read.
async fn tail(
    partition: u32,
    addrs: Arc<Mutex<Vec<Option<String>>>>,
    clients: Clients,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut next = 0i64;
    let mut seen = Vec::new();
    let mut turn = partition as usize;
    let options = FetchOptions {
        max_wait: Duration::from_millis(200),
        ..FetchOptions::default()
    };
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let Some(client) = clients.any(&addrs, turn).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match client.fetch(TOPIC, partition, next, options).await {
            Ok(batch) => {
                for record in batch.records {
                    assert_eq!(
                        record.offset, next,
                        "partition {partition}: a reader was given offset {} where {next} was next",
                        record.offset
                    );
                    seen.push(value_of(&record));
                    next += 1;
                }
            }
            Err(error) if error.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(error) => panic!("partition {partition}: reading at {next}: {error}"),
        }
    }
    seen
}

fn value_of(record: &StoredRecord) -> String {
    String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap()
}

/// Every record of a partition, from offset 0 to its high watermark, through one agent.
async fn read_back(client: &Client, partition: u32) -> Vec<StoredRecord> {
    let latest = client.latest_offsets(TOPIC).await.unwrap();
    let end = latest
        .iter()
        .find(|p| p.partition == partition)
        .and_then(|p| p.offset)
        .unwrap();
    let mut records = Vec::new();
    while (records.len() as i64) < end {
        let batch = client
            .fetch(
                TOPIC,
                partition,
                records.len() as i64,
                FetchOptions::default(),
            )
            .await
            .unwrap();
        assert!(
            !batch.records.is_empty(),
            "partition {partition} ended early"
        );
        records.extend(batch.records);
    }
    records
}

fn cycles() -> usize {
    std::env::var("SHALE_CHAOS_CYCLES")
        .ok()
        .map_or(20, |value| {
            value.parse().expect("SHALE_CHAOS_CYCLES is a number")
        })
}

/// Producers and tailing readers on every partition, through whichever agents are up.
struct Load {
    stop_producers: Arc<AtomicBool>,
    stop_readers: Arc<AtomicBool>,
    producers: Vec<tokio::task::JoinHandle<(Acked, Duration)>>,
    readers: Vec<tokio::task::JoinHandle<Vec<String>>>,
    clients: Clients,
}

impl Load {
    async fn start(cluster: &Cluster) -> Self {
        let clients = Clients::default();
        let admin = clients.any(&cluster.addrs, 0).await.unwrap();
        admin
            .create_topic(TOPIC, PARTITIONS, BTreeMap::new())
            .await
            .unwrap();
        let stop_producers = Arc::new(AtomicBool::new(false));
        let stop_readers = Arc::new(AtomicBool::new(false));
        let producers = (0..PARTITIONS)
            .map(|partition| {
                tokio::spawn(produce(
                    partition,
                    Arc::clone(&cluster.addrs),
                    clients.clone(),
                    Arc::clone(&stop_producers),
                ))
            })
            .collect();
        let readers = (0..PARTITIONS)
            .map(|partition| {
                tokio::spawn(tail(
                    partition,
                    Arc::clone(&cluster.addrs),
                    clients.clone(),
                    Arc::clone(&stop_readers),
                ))
            })
            .collect();
        Self {
            stop_producers,
            stop_readers,
            producers,
            readers,
            clients,
        }
    }

    /// Stops the load, reads every partition back and checks the invariants. Returns the
    /// longest wait for one ack of each partition, sorted.
    async fn finish_and_check(self, cluster: &Cluster) -> Vec<Duration> {
        self.stop_producers.store(true, Ordering::Relaxed);
        let mut acked: Vec<Acked> = Vec::new();
        let mut longest = Vec::new();
        for producer in self.producers {
            let (partition_acked, wait) = producer.await.unwrap();
            acked.push(partition_acked);
            longest.push(wait);
        }
        // Let the readers catch up with the last acks, then stop them.
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.stop_readers.store(true, Ordering::Relaxed);
        let mut tails = Vec::new();
        for reader in self.readers {
            tails.push(reader.await.unwrap());
        }
        let reader = self.clients.any(&cluster.addrs, 0).await.unwrap();
        for partition in 0..PARTITIONS {
            let stored = read_back(&reader, partition).await;
            check_partition(
                partition,
                &stored,
                &acked[partition as usize],
                &tails[partition as usize],
            )
            .unwrap_or_else(|failure| panic!("{failure}\nagent logs:\n{}", cluster.logs()));
        }
        let total: usize = acked.iter().map(Vec::len).sum();
        assert!(total > 0, "nothing was acknowledged");
        eprintln!("{total} records acknowledged and checked");
        longest.sort();
        longest
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged_and_readers_see_no_gap() {
    let mut cluster = Cluster::start();
    let load = Load::start(&cluster).await;
    // Seeded, so a failing run can be repeated with the same kills.
    let mut rng = fastrand_like(0x05AA_1E00);
    let cycles = cycles();
    for cycle in 0..cycles {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let victim = (rng() % AGENTS as u64) as usize;
        if cycle % 4 == 3 {
            // Frozen past its lease: its partitions move on; when it wakes it must commit
            // nothing more (its fence is gone) and rejoin.
            cluster.signal(victim, "STOP");
            tokio::time::sleep(Duration::from_millis(3500)).await;
            cluster.signal(victim, "CONT");
            eprintln!(
                "cycle {cycle}: froze {} past its lease",
                cluster.nodes[victim].id
            );
            continue;
        }
        cluster.kill9(victim);
        // Every third kill waits out the lease (the crash path: partitions move when it
        // expires); the others restart at once (the restarted process takes its own
        // registration back).
        if cycle % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(2500)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::task::block_in_place(|| cluster.launch(victim));
        eprintln!(
            "cycle {cycle}: killed and restarted {}",
            cluster.nodes[victim].id
        );
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let longest = load.finish_and_check(&cluster).await;
    eprintln!("{cycles} kills; longest wait for one ack, per partition: {longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_readers_see_no_gap() {
    let mut cluster = Cluster::start();
    let load = Load::start(&cluster).await;
    for round in 0..2 {
        for index in 0..AGENTS {
            tokio::time::sleep(Duration::from_millis(700)).await;
            // SIGTERM: the agent stops taking produces, commits what it took and leaves;
            // then it comes back and takes its share again by graceful handoff.
            tokio::task::block_in_place(|| {
                cluster.stop(index);
                cluster.launch(index);
            });
            eprintln!("round {round}: restarted {}", cluster.nodes[index].id);
        }
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let longest = load.finish_and_check(&cluster).await;
    eprintln!("rolling restarts; longest wait for one ack, per partition: {longest:?}");
}

/// The invariants of one partition: dense offsets, every ack present once where it said,
/// a producer's records in order, nothing unsent, and the tailing reader's view a prefix.
fn check_partition(
    partition: u32,
    stored: &[StoredRecord],
    acked: &Acked,
    tail: &[String],
) -> Result<(), String> {
    for (index, record) in stored.iter().enumerate() {
        if record.offset != index as i64 {
            return Err(format!(
                "partition {partition}: offset {} stored at position {index}: offsets are not dense",
                record.offset
            ));
        }
    }
    let values: Vec<String> = stored.iter().map(value_of).collect();
    if values.len() != acked.len() {
        return Err(format!(
            "partition {partition}: {} records stored but {} acknowledged (the producers stop only after an ack)",
            values.len(),
            acked.len()
        ));
    }
    let mut positions: HashMap<&str, i64> = HashMap::new();
    for (offset, value) in values.iter().enumerate() {
        if positions.insert(value.as_str(), offset as i64).is_some() {
            return Err(format!("partition {partition}: {value} is stored twice"));
        }
        let prefix = format!("p{partition}-s");
        if !value.starts_with(&prefix) {
            return Err(format!(
                "partition {partition}: {value} was never sent here"
            ));
        }
    }
    for (value, offset) in acked {
        match positions.get(value.as_str()) {
            None => {
                return Err(format!(
                    "partition {partition}: acknowledged {value} (offset {offset}) is missing"
                ));
            }
            Some(stored_at) if stored_at != offset => {
                return Err(format!(
                    "partition {partition}: {value} was acknowledged at offset {offset} but is stored at {stored_at}"
                ));
            }
            Some(_) => {}
        }
    }
    // Sequence order: the stored values' sequence numbers only increase.
    let sequences: Vec<i64> = values
        .iter()
        .map(|value| value.rsplit('s').next().unwrap().parse().unwrap())
        .collect();
    for (offset, sequence) in sequences.iter().enumerate() {
        if *sequence != offset as i64 {
            return Err(format!(
                "partition {partition}: sequence {sequence} is stored at offset {offset}: the producer's records are out of order or one is missing"
            ));
        }
    }
    if tail.len() > values.len() || tail != &values[..tail.len()] {
        return Err(format!(
            "partition {partition}: the tailing reader saw {} records that are not a prefix of the {} stored",
            tail.len(),
            values.len()
        ));
    }
    Ok(())
}

/// A small seeded generator (splitmix64), so the kills repeat for a seed.
fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restarted_under_load_loses_nothing_and_readers_see_no_gap() {
    let mut cluster = Cluster::start();
    let load = Load::start(&cluster).await;
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Killed and started again on its data: every agent's watch, keep-alive and
        // commits fail meanwhile, and their leases may run out.
        tokio::task::block_in_place(|| cluster.etcd.restart().unwrap());
        eprintln!("round {round}: etcd restarted");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let longest = load.finish_and_check(&cluster).await;
    eprintln!("etcd restarts; longest wait for one ack, per partition: {longest:?}");
}

/// Each partition's leader and leader epoch, as the cluster describes them, once all
/// [`AGENTS`] are registered, every partition is led, and two looks a second apart agree.
async fn settled_leaders(client: &Client) -> BTreeMap<u32, (String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = BTreeMap::new();
    loop {
        let cluster = client.describe_cluster().await.unwrap();
        let leaders: BTreeMap<u32, (String, u64)> = cluster
            .topics
            .iter()
            .filter(|topic| topic.topic.name == TOPIC)
            .flat_map(|topic| &topic.partitions)
            .filter_map(|p| Some((p.partition, (p.leader.clone()?, p.leader_epoch))))
            .collect();
        let settled = cluster.agents.len() == AGENTS && leaders.len() == PARTITIONS as usize;
        if settled && leaders == last {
            return leaders;
        }
        assert!(
            Instant::now() < deadline,
            "leadership did not settle: {} agents, leaders {leaders:?}",
            cluster.agents.len()
        );
        last = leaders;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_pauses_shorter_than_the_lease_move_no_partition() {
    let cluster = Cluster::start();
    let load = Load::start(&cluster).await;
    let client = load.clients.any(&cluster.addrs, 0).await.unwrap();
    let before = settled_leaders(&client).await;
    for round in 0..3 {
        // A hiccup: etcd answers nothing (keep-alives, commits and watches all hang) for a
        // third of the lease TTL, so every lease outlives it.
        pause_etcd(&cluster, Duration::from_millis(700)).await;
        eprintln!("round {round}: etcd paused for 700 ms");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // Neither moved nor re-claimed by its own leader (which would bump its epoch): a pause
    // past the TTL (3.5 s) fails this with every epoch bumped, since every lease ends.
    let after = settled_leaders(&client).await;
    assert_eq!(
        before,
        after,
        "partitions moved or were re-claimed across etcd pauses shorter than the lease\nagent logs:\n{}",
        cluster.logs()
    );
    load.finish_and_check(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_pause_past_the_lease_moves_each_partition_at_most_once() {
    let cluster = Cluster::start();
    let load = Load::start(&cluster).await;
    let client = load.clients.any(&cluster.addrs, 0).await.unwrap();
    let before = settled_leaders(&client).await;
    // Every agent's lease ends at once. Whichever agent registers again first must not take
    // every partition only to hand most of them on as the others return: each partition is
    // claimed once, by the agent that led it before.
    pause_etcd(&cluster, Duration::from_millis(3500)).await;
    eprintln!("etcd paused for 3.5 s, past the 2 s lease");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = settled_leaders(&client).await;
    let expected: BTreeMap<u32, (String, u64)> = before
        .iter()
        .map(|(partition, (leader, epoch))| (*partition, (leader.clone(), epoch + 1)))
        .collect();
    assert_eq!(
        after,
        expected,
        "after every lease ended, partitions were not claimed exactly once by their previous leaders (before: {before:?})\nagent logs:\n{}",
        cluster.logs()
    );
    load.finish_and_check(&cluster).await;
}

/// Freezes etcd (SIGSTOP) for `how_long`, then wakes it.
async fn pause_etcd(cluster: &Cluster, how_long: Duration) {
    send_signal(cluster.etcd.pid(), "STOP");
    tokio::time::sleep(how_long).await;
    send_signal(cluster.etcd.pid(), "CONT");
}

/// Sends `signal` (`STOP`, `CONT`) to a process this test started.
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_live_agents_id_fails_clearly_and_changes_nothing() {
    let cluster = Cluster::start();
    let clients = Clients::default();
    let client = clients.any(&cluster.addrs, 0).await.unwrap();
    client
        .create_topic(TOPIC, PARTITIONS, BTreeMap::new())
        .await
        .unwrap();
    let leaders = || async {
        loop {
            let topic = client.describe_topic(TOPIC).await.unwrap();
            if topic.partitions.iter().all(|p| p.leader.is_some()) {
                return topic
                    .partitions
                    .into_iter()
                    .map(|p| (p.partition, p.leader, p.leader_epoch))
                    .collect::<Vec<_>>();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let before = leaders().await;
    // Same id as a running agent, its own cache folder (so no lease file of the first).
    let dir = cluster.dir.path().join("impostor");
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = cluster.command("chaos-0", &dir);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the second process started:\n{stderr}"
    );
    assert!(
        stderr.contains("is registered by another live process"),
        "no clear reason:\n{stderr}"
    );
    // Nothing moved: same leaders, same epochs.
    assert_eq!(leaders().await, before);
}

/// One `shale consume --group G --follow` process.
struct Member {
    process: Option<ChildGuard>,
    output: PathBuf,
}

impl Member {
    fn start(cluster: &Cluster, index: usize) -> Self {
        // Each member starts at a different agent of the list; any one is enough.
        let mut addrs: Vec<String> = cluster
            .addrs
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect();
        let count = addrs.len();
        addrs.rotate_left(index % count);
        let output = cluster.dir.path().join(format!("member-{index}.out"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_shale"));
        command
            .env("RUST_LOG", "warn")
            .args(["--addr", &addrs.join(",")])
            .args(["consume", GROUP_TOPIC, "--group", "workers", "--follow"])
            .args(["--format", "json", "--session-timeout", "1500ms"])
            .args(["--commit-interval", "200ms"]);
        let process = ChildGuard::spawn(format!("member-{index}"), command, &output).unwrap();
        Self {
            process: Some(process),
            output,
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// (partition, offset, value) of every record printed.
    fn records(&self) -> Vec<(u32, i64, String)> {
        self.text()
            .lines()
            .filter(|line| line.starts_with('{'))
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|record| {
                (
                    u32::try_from(record["partition"].as_u64().unwrap()).unwrap(),
                    record["offset"].as_i64().unwrap(),
                    record["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The partitions of the last generation the member reported.
    fn assignment(&self) -> Option<Vec<u32>> {
        let text = self.text();
        let line = text
            .lines()
            .rev()
            .find(|line| line.contains("this member consumes ["))?;
        let list = line.split_once('[')?.1.trim_end_matches(']');
        Some(
            list.split(", ")
                .filter(|item| !item.is_empty())
                .map(|item| item.rsplit('/').next().unwrap().parse().unwrap())
                .collect(),
        )
    }
}

const GROUP_TOPIC: &str = "work";

/// Produces 20 records to every partition, valued `round-partition-i`.
async fn produce_round(client: &Client, round: u32) -> Vec<String> {
    let mut values = Vec::new();
    for partition in 0..PARTITIONS {
        let batch: Vec<String> = (0..20)
            .map(|i| format!("r{round}-p{partition}-{i}"))
            .collect();
        client
            .produce(
                ProduceRequest::new(GROUP_TOPIC, batch.iter().map(|v| Record::new(v.clone())))
                    .with_partition(partition),
            )
            .await
            .unwrap();
        values.extend(batch);
    }
    values
}

/// Waits until `members` together printed every value of `wanted`, and their last
/// generations split the partitions between the live ones.
async fn wait_consumed(members: &mut [Member], live: &[usize], wanted: &[String]) {
    let started = Instant::now();
    loop {
        for index in live {
            if let Err(error) = members[*index].process.as_mut().unwrap().check_running() {
                panic!("{error}");
            }
        }
        let printed: std::collections::HashSet<String> = members
            .iter()
            .flat_map(|m| m.records().into_iter().map(|(_, _, value)| value))
            .collect();
        let missing = wanted.iter().filter(|v| !printed.contains(*v)).count();
        let mut assigned: Vec<u32> = live
            .iter()
            .flat_map(|i| members[*i].assignment().unwrap_or_default())
            .collect();
        assigned.sort_unstable();
        let split = assigned == (0..PARTITIONS).collect::<Vec<_>>()
            && live
                .iter()
                .all(|i| members[*i].assignment().is_some_and(|a| !a.is_empty()));
        if missing == 0 && split {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "{missing} records not consumed, or the partitions not split ({assigned:?}) after 60 s; members' output:\n{}",
            members
                .iter()
                .map(|m| m
                    .text()
                    .lines()
                    .filter(|l| !l.starts_with('{'))
                    .collect::<Vec<_>>()
                    .join("\n"))
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Three `shale consume --group workers --follow` processes share the partitions; one is
/// killed with SIGKILL and the other two take its partitions over from the group's
/// committed offsets: every record is printed, none skipped; only the killed member's
/// partitions may repeat records (those it printed after its last commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_share_partitions_and_a_killed_ones_move_to_the_others() {
    let cluster = Cluster::start();
    let clients = Clients::default();
    let client = clients.any(&cluster.addrs, 0).await.unwrap();
    client
        .create_topic(GROUP_TOPIC, PARTITIONS, BTreeMap::new())
        .await
        .unwrap();
    let mut wanted = produce_round(&client, 0).await;
    let mut members: Vec<Member> = (0..3).map(|i| Member::start(&cluster, i)).collect();
    wait_consumed(&mut members, &[0, 1, 2], &wanted).await;
    wanted.extend(produce_round(&client, 1).await);
    wait_consumed(&mut members, &[0, 1, 2], &wanted).await;
    let killed_partitions = members[0].assignment().unwrap();
    members[0].process.take().unwrap().kill();
    eprintln!("killed the member consuming partitions {killed_partitions:?}");
    wanted.extend(produce_round(&client, 2).await);
    wait_consumed(&mut members, &[1, 2], &wanted).await;
    for member in &mut members[1..] {
        tokio::task::block_in_place(|| support::terminate(member.process.take().unwrap()));
    }
    // Nothing skipped: every partition's offsets are all printed, from 0 to the end.
    let latest = client.latest_offsets(GROUP_TOPIC).await.unwrap();
    let mut seen: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for member in &members {
        for (partition, offset, _) in member.records() {
            seen.entry(partition).or_default().push(offset);
        }
    }
    for end in &latest {
        let partition = end.partition;
        let mut offsets = seen.remove(&partition).unwrap_or_default();
        let printed = offsets.len();
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(
            offsets,
            (0..end.offset.unwrap()).collect::<Vec<_>>(),
            "partition {partition}: offsets printed"
        );
        if printed != offsets.len() {
            assert!(
                killed_partitions.contains(&partition),
                "partition {partition} repeated records though its member was not killed"
            );
        }
    }
    // The survivors committed on their way out: the group is at the end of every partition.
    let committed: BTreeMap<u32, i64> = client
        .fetch_offsets("workers", GROUP_TOPIC, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.partition, o.offset))
        .collect();
    let ends: BTreeMap<u32, i64> = latest
        .iter()
        .map(|o| (o.partition, o.offset.unwrap()))
        .collect();
    assert_eq!(committed, ends);
}
