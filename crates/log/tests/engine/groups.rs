//! Consumer-group membership on the engine's coordinator: joins, rebalances, generation
//! fencing of offset commits, session expiry, the Kafka-style two-step join with a
//! leader-computed assignment, and a coordinator restart.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use shale_log::{
    GroupMember, GroupOffset, GroupPhase, GroupProtocol, JoinGroupRequest, JoinGroupResponse, Log,
    LogConfig, LogError, NativeSubscription, SERVER_ASSIGNED_PROTOCOL_TYPE,
    decode_native_assignment,
};

use crate::harness::{Backends, Harness, test_config};

/// Short timers, so sessions expire and rebalances complete within a test.
pub(crate) fn group_config() -> LogConfig {
    LogConfig {
        group_min_session_timeout: Duration::from_millis(100),
        group_initial_rebalance_delay: Duration::from_millis(100),
        ..test_config()
    }
}

fn native_join(
    group: &str,
    member_id: &str,
    topics: &[&str],
    session: Duration,
) -> JoinGroupRequest {
    let metadata = NativeSubscription {
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
    }
    .encode();
    JoinGroupRequest {
        group: group.to_owned(),
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "test".to_owned(),
        client_host: "127.0.0.1".to_owned(),
        session_timeout: session,
        rebalance_timeout: Duration::from_secs(5),
        protocol_type: SERVER_ASSIGNED_PROTOCOL_TYPE.to_owned(),
        protocols: vec![GroupProtocol {
            name: "sticky".to_owned(),
            metadata,
        }],
        require_known_member_id: false,
    }
}

fn partitions_of(joined: &JoinGroupResponse) -> Vec<u32> {
    let assignment =
        decode_native_assignment(joined.assignment.as_deref().unwrap_or_default()).unwrap();
    assignment.get("orders").cloned().unwrap_or_default()
}

fn member(joined: &JoinGroupResponse) -> GroupMember {
    GroupMember {
        member_id: joined.member_id.clone(),
        generation: joined.generation,
    }
}

async fn join(log: &Log, request: JoinGroupRequest) -> JoinGroupResponse {
    log.join_group(request).await.unwrap()
}

/// Joins both at once (a join waits for the rebalance it starts).
async fn join_two(
    log: &Log,
    a: JoinGroupRequest,
    b: JoinGroupRequest,
) -> (JoinGroupResponse, JoinGroupResponse) {
    let (a, b) = tokio::join!(log.join_group(a), log.join_group(b));
    (a.unwrap(), b.unwrap())
}

/// Every partition exactly once over the members.
fn assert_covers(parts: &[Vec<u32>], partitions: u32) {
    let mut all: Vec<u32> = parts.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..partitions).collect::<Vec<_>>(), "{parts:?}");
}

pub(crate) async fn members_share_partitions_and_stale_generations_are_fenced(backends: Backends) {
    let h = Harness::start_with(backends, group_config()).await;
    h.create_topic("orders", 6).await;
    let log = h.log();
    let session = Duration::from_secs(10);

    let first = join(log, native_join("g", "", &["orders"], session)).await;
    assert_eq!(first.generation, 1);
    assert_eq!(partitions_of(&first), (0..6).collect::<Vec<_>>());
    log.heartbeat("g", member(&first)).await.unwrap();
    log.commit_group_offsets(
        "g",
        "orders",
        &[GroupOffset {
            partition: 0,
            offset: 3,
            metadata: String::new(),
        }],
        Some(&member(&first)),
    )
    .await
    .unwrap();

    // A second member: the first hears of the rebalance on its heartbeat and rejoins.
    let second = tokio::spawn({
        let log = log.clone();
        async move {
            log.join_group(native_join("g", "", &["orders"], session))
                .await
        }
    });
    let mut told = false;
    for _ in 0..100 {
        match log.heartbeat("g", member(&first)).await {
            Err(LogError::RebalanceInProgress { .. }) => {
                told = true;
                break;
            }
            Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(other) => panic!("unexpected heartbeat answer: {other}"),
        }
    }
    assert!(told, "the first member was never told to rejoin");
    // Until it rejoins, a commit of the old generation still lands (Kafka's rule).
    log.commit_group_offsets(
        "g",
        "orders",
        &[GroupOffset {
            partition: 0,
            offset: 4,
            metadata: String::new(),
        }],
        Some(&member(&first)),
    )
    .await
    .unwrap();
    let first_again = join(
        log,
        native_join("g", &first.member_id, &["orders"], session),
    )
    .await;
    let second = second.await.unwrap().unwrap();
    assert_eq!(first_again.generation, 2);
    assert_eq!(second.generation, 2);
    assert_ne!(first_again.member_id, second.member_id);
    let (a, b) = (partitions_of(&first_again), partitions_of(&second));
    assert_eq!((a.len(), b.len()), (3, 3), "{a:?} {b:?}");
    assert_covers(&[a.clone(), b], 6);
    // Sticky: the first member keeps half of what it had (it had everything).
    assert!(a.iter().all(|p| (0..6).contains(p)));

    // The first generation is over: its commits and heartbeats are refused.
    let stale = log
        .commit_group_offsets(
            "g",
            "orders",
            &[GroupOffset {
                partition: 0,
                offset: 99,
                metadata: String::new(),
            }],
            Some(&member(&first)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            LogError::IllegalGeneration {
                generation: 1,
                current: 2,
                ..
            }
        ),
        "{stale}"
    );
    let stale = log.heartbeat("g", member(&first)).await.unwrap_err();
    assert!(
        matches!(stale, LogError::IllegalGeneration { .. }),
        "{stale}"
    );
    let offsets = log.fetch_group_offsets("g", "orders", &[0]).await.unwrap();
    assert_eq!(offsets[0].offset, 4, "the fenced commit must not land");

    // A commit from outside the group is refused while it has members.
    let outside = log
        .commit_group_offsets(
            "g",
            "orders",
            &[GroupOffset {
                partition: 0,
                offset: 7,
                metadata: String::new(),
            }],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(outside, LogError::GroupHasMembers { members: 2, .. }),
        "{outside}"
    );

    // Both leave: the group is empty, and outside commits work again.
    log.leave_group("g", vec![second.member_id.clone()])
        .await
        .unwrap();
    let last = join(
        log,
        native_join("g", &first.member_id, &["orders"], session),
    )
    .await;
    assert_eq!(partitions_of(&last), (0..6).collect::<Vec<_>>());
    log.leave_group("g", vec![first.member_id.clone()])
        .await
        .unwrap();
    let described = log.describe_group("g").await.unwrap();
    assert_eq!(described.phase, GroupPhase::Empty);
    assert!(described.members.is_empty());
    log.commit_group_offsets(
        "g",
        "orders",
        &[GroupOffset {
            partition: 0,
            offset: 7,
            metadata: String::new(),
        }],
        None,
    )
    .await
    .unwrap();
    let unknown = log.heartbeat("g", member(&last)).await.unwrap_err();
    assert!(
        matches!(unknown, LogError::UnknownMember { .. }),
        "{unknown}"
    );
    h.log().shutdown().await;
}

pub(crate) async fn a_silent_member_is_evicted_and_the_rest_take_its_partitions(
    backends: Backends,
) {
    let h = Harness::start_with(backends, group_config()).await;
    h.create_topic("orders", 4).await;
    let log = h.log();
    let short = Duration::from_millis(600);
    let (a, b) = join_two(
        log,
        native_join("g", "", &["orders"], short),
        native_join("g", "", &["orders"], short),
    )
    .await;
    assert_eq!(a.generation, b.generation);
    assert_covers(&[partitions_of(&a), partitions_of(&b)], 4);
    // `a` keeps heartbeating, `b` goes silent.
    let mut rejoin = None;
    for _ in 0..100 {
        match log.heartbeat("g", member(&a)).await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(LogError::RebalanceInProgress { .. }) => {
                rejoin = Some(join(log, native_join("g", &a.member_id, &["orders"], short)).await);
                break;
            }
            Err(other) => panic!("unexpected heartbeat answer: {other}"),
        }
    }
    let alone = rejoin.expect("the silent member was never evicted");
    assert_eq!(alone.generation, a.generation + 1);
    assert_eq!(partitions_of(&alone), (0..4).collect::<Vec<_>>());
    let gone = log.heartbeat("g", member(&b)).await.unwrap_err();
    assert!(
        matches!(
            gone,
            LogError::UnknownMember { .. } | LogError::IllegalGeneration { .. }
        ),
        "{gone}"
    );
    h.log().shutdown().await;
}

pub(crate) async fn kafka_style_join_lets_the_leader_assign(backends: Backends) {
    let h = Harness::start_with(backends, group_config()).await;
    let log = h.log();
    let request = |member_id: &str| JoinGroupRequest {
        group: "k".to_owned(),
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "rdkafka".to_owned(),
        client_host: "10.0.0.1".to_owned(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(5),
        protocol_type: "consumer".to_owned(),
        protocols: vec![
            GroupProtocol {
                name: "cooperative-sticky".to_owned(),
                metadata: Bytes::from_static(b"cs"),
            },
            GroupProtocol {
                name: "range".to_owned(),
                metadata: Bytes::from_static(b"r"),
            },
        ],
        require_known_member_id: true,
    };
    // Step one: the coordinator hands out a member id.
    let required = log.join_group(request("")).await.unwrap_err();
    let LogError::MemberIdRequired {
        member_id: first_id,
        ..
    } = required
    else {
        panic!("expected MEMBER_ID_REQUIRED, got {required}");
    };
    let required = log.join_group(request("")).await.unwrap_err();
    let LogError::MemberIdRequired {
        member_id: second_id,
        ..
    } = required
    else {
        panic!("expected MEMBER_ID_REQUIRED, got {required}");
    };
    // A member id nobody handed out is unknown.
    let unknown = log.join_group(request("made-up")).await.unwrap_err();
    assert!(
        matches!(unknown, LogError::UnknownMember { .. }),
        "{unknown}"
    );
    let (a, b) = join_two(log, request(&first_id), request(&second_id)).await;
    assert_eq!(a.generation, b.generation);
    assert_eq!(a.protocol.as_deref(), Some("cooperative-sticky"));
    let (leader, follower) = if a.leader == a.member_id {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        leader.members.len(),
        2,
        "the leader sees every member's metadata"
    );
    assert!(
        leader
            .members
            .iter()
            .all(|m| m.metadata == Bytes::from_static(b"cs"))
    );
    assert!(follower.members.is_empty());
    assert_eq!(leader.assignment, None);
    // The follower's sync waits for the leader's.
    let waiting = tokio::spawn({
        let log = log.clone();
        let follower = member(&follower);
        async move { log.sync_group("k", follower, Vec::new()).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    let assignments = vec![
        (leader.member_id.clone(), Bytes::from_static(b"leader-part")),
        (
            follower.member_id.clone(),
            Bytes::from_static(b"follower-part"),
        ),
    ];
    let mine = log
        .sync_group("k", member(&leader), assignments)
        .await
        .unwrap();
    assert_eq!(mine, Bytes::from_static(b"leader-part"));
    assert_eq!(
        waiting.await.unwrap().unwrap(),
        Bytes::from_static(b"follower-part")
    );
    // A member offering another protocol type cannot join.
    let mut other = request("");
    "connect".clone_into(&mut other.protocol_type);
    other.require_known_member_id = false;
    let refused = log.join_group(other).await.unwrap_err();
    assert!(
        matches!(refused, LogError::InconsistentGroupProtocol { .. }),
        "{refused}"
    );
    let described = log.describe_group("k").await.unwrap();
    assert_eq!(described.phase, GroupPhase::Stable);
    assert_eq!(described.members.len(), 2);
    h.log().shutdown().await;
}

pub(crate) async fn membership_survives_a_coordinator_restart(backends: Backends) {
    let mut h = Harness::start_with(backends, group_config()).await;
    h.create_topic("orders", 2).await;
    let joined = join(
        h.log(),
        native_join("g", "", &["orders"], Duration::from_secs(10)),
    )
    .await;
    h.restart().await;
    // The new process reads the generation back: the member carries on without a rebalance.
    h.log().heartbeat("g", member(&joined)).await.unwrap();
    h.log()
        .commit_group_offsets(
            "g",
            "orders",
            &[GroupOffset {
                partition: 1,
                offset: 2,
                metadata: String::new(),
            }],
            Some(&member(&joined)),
        )
        .await
        .unwrap();
    let described = h.log().describe_group("g").await.unwrap();
    assert_eq!(
        (described.phase, described.generation),
        (GroupPhase::Stable, joined.generation)
    );
    let fetched: BTreeMap<u32, i64> = h
        .log()
        .fetch_group_offsets("g", "orders", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.partition, o.offset))
        .collect();
    assert_eq!(fetched, BTreeMap::from([(1, 2)]));
    h.log().shutdown().await;
}

pub(crate) async fn bad_group_requests_get_clear_errors(backends: Backends) {
    let h = Harness::start_with(backends, group_config()).await;
    let log = h.log();
    let mut request = native_join("g", "", &["orders"], Duration::from_millis(10));
    let error = log.join_group(request.clone()).await.unwrap_err();
    assert!(error.to_string().contains("session timeout"), "{error}");
    request.session_timeout = Duration::from_secs(10);
    "fastest".clone_into(&mut request.protocols[0].name);
    let error = log.join_group(request.clone()).await.unwrap_err();
    assert!(
        error.to_string().contains("unknown partition assignor"),
        "{error}"
    );
    "range".clone_into(&mut request.protocols[0].name);
    request.protocols[0].metadata = Bytes::from(vec![0xff; 300 << 10]);
    let error = log.join_group(request.clone()).await.unwrap_err();
    assert!(error.to_string().contains("member metadata"), "{error}");
    request.protocols[0].metadata = Bytes::from_static(b"{not json");
    let error = log.join_group(request.clone()).await.unwrap_err();
    assert!(matches!(error, LogError::InvalidRequest(_)), "{error}");
    request.group = String::new();
    let error = log.join_group(request).await.unwrap_err();
    assert!(error.to_string().contains("group name"), "{error}");
    let error = log
        .heartbeat(
            "nobody",
            GroupMember {
                member_id: "m".to_owned(),
                generation: 1,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::UnknownMember { .. }), "{error}");
    h.log().shutdown().await;
}

/// Two agents: each group has one coordinator; the other agent points at it.
pub(crate) async fn each_group_has_one_coordinator_and_the_other_agent_points_to_it() {
    let h = Harness::start_with(Backends::EtcdS3, group_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let other = h
        .open_another(
            LogConfig {
                agent_id: "other-agent".to_owned(),
                lease_file: Some(dir.path().join("lease")),
                ..group_config()
            },
            7,
        )
        .await
        .unwrap();
    for _ in 0..200 {
        if h.log().find_coordinator("g0").unwrap().is_some()
            && other.find_coordinator("g0").unwrap() == h.log().find_coordinator("g0").unwrap()
            && (0..20).all(|g| {
                let group = format!("g{g}");
                h.log().find_coordinator(&group).unwrap() == other.find_coordinator(&group).unwrap()
            })
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut served = [0, 0];
    for g in 0..20 {
        let group = format!("g{g}");
        let coordinator = h.log().find_coordinator(&group).unwrap().unwrap();
        let (at, elsewhere, index) = if coordinator == "test-agent" {
            (h.log(), &other, 0)
        } else {
            (&other, h.log(), 1)
        };
        served[index] += 1;
        let request = native_join(&group, "", &["none"], Duration::from_secs(10));
        let refused = elsewhere.join_group(request.clone()).await.unwrap_err();
        assert!(
            matches!(&refused, LogError::NotCoordinator { coordinator: Some(c), .. } if *c == coordinator),
            "{refused}"
        );
        assert!(refused.is_retryable());
        let joined = at.join_group(request).await.unwrap();
        assert_eq!(
            partitions_of(&joined),
            Vec::<u32>::new(),
            "no such topic: nothing assigned"
        );
    }
    assert!(
        served[0] > 0 && served[1] > 0,
        "20 groups all on one agent: {served:?}"
    );
    other.shutdown().await;
    h.log().shutdown().await;
}

/// Sticky assignment keeps partitions where they were: when a third member joins two that
/// split six partitions, each of the two keeps two of its three (found in review: the
/// previous assignment was cleared before the assignor saw it, so nothing stuck).
pub(crate) async fn sticky_rebalances_move_few_partitions(backends: Backends) {
    let h = Harness::start_with(backends, group_config()).await;
    h.create_topic("orders", 6).await;
    let log = h.log();
    let session = Duration::from_secs(10);
    let (a, b) = join_two(
        log,
        native_join("g", "", &["orders"], session),
        native_join("g", "", &["orders"], session),
    )
    .await;
    let before = [partitions_of(&a), partitions_of(&b)];
    let third = tokio::spawn({
        let log = log.clone();
        async move {
            log.join_group(native_join("g", "", &["orders"], session))
                .await
        }
    });
    // The two members learn of the rebalance and rejoin.
    for _ in 0..100 {
        if log.heartbeat("g", member(&a)).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (a2, b2) = join_two(
        log,
        native_join("g", &a.member_id, &["orders"], session),
        native_join("g", &b.member_id, &["orders"], session),
    )
    .await;
    let c = third.await.unwrap().unwrap();
    let after = [partitions_of(&a2), partitions_of(&b2), partitions_of(&c)];
    assert_covers(&after, 6);
    for (old, new) in before.iter().zip(&after) {
        let kept = new.iter().filter(|p| old.contains(p)).count();
        assert_eq!(
            (new.len(), kept),
            (2, 2),
            "before {before:?}, after {after:?}"
        );
    }
    h.log().shutdown().await;
}

/// A native member subscribed to a topic that does not exist yet gets its partitions once
/// it is created: the coordinator rebalances when a subscribed topic appears.
pub(crate) async fn a_topic_created_later_is_assigned(backends: Backends) {
    let h = Harness::start_with(backends, group_config()).await;
    let log = h.log();
    let joined = join(
        log,
        native_join("g", "", &["later"], Duration::from_secs(10)),
    )
    .await;
    assert_eq!(
        decode_native_assignment(joined.assignment.as_deref().unwrap_or_default())
            .unwrap()
            .get("later"),
        None
    );
    h.create_topic("later", 3).await;
    let mut told = false;
    for _ in 0..200 {
        match log.heartbeat("g", member(&joined)).await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(LogError::RebalanceInProgress { .. }) => {
                told = true;
                break;
            }
            Err(other) => panic!("unexpected heartbeat answer: {other}"),
        }
    }
    assert!(
        told,
        "the member was not told to rejoin when its topic appeared"
    );
    let again = join(
        log,
        native_join("g", &joined.member_id, &["later"], Duration::from_secs(10)),
    )
    .await;
    let assignment =
        decode_native_assignment(again.assignment.as_deref().unwrap_or_default()).unwrap();
    assert_eq!(assignment.get("later"), Some(&vec![0, 1, 2]));
    h.log().shutdown().await;
}

/// A Kafka-style leader that never sends its assignment does not hold the group forever:
/// after the rebalance timeout it is removed and the members waiting in SyncGroup are told
/// to rejoin.
pub(crate) async fn a_leader_that_never_syncs_is_removed(backends: Backends) {
    let h = Harness::start_with(backends, group_config()).await;
    let log = h.log();
    let request = |member_id: &str| JoinGroupRequest {
        group: "k".to_owned(),
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "client".to_owned(),
        client_host: "10.0.0.1".to_owned(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_millis(500),
        protocol_type: "consumer".to_owned(),
        protocols: vec![GroupProtocol {
            name: "range".to_owned(),
            metadata: Bytes::from_static(b"r"),
        }],
        require_known_member_id: false,
    };
    let (a, b) = join_two(log, request(""), request("")).await;
    let follower = if a.leader == a.member_id { b } else { a };
    let started = tokio::time::Instant::now();
    let refused = log
        .sync_group("k", member(&follower), Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LogError::RebalanceInProgress { .. }),
        "{refused}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let described = log.describe_group("k").await.unwrap();
    assert_eq!(described.members.len(), 1, "the silent leader is out");
    assert_eq!(described.members[0].member_id, follower.member_id);
    h.log().shutdown().await;
}

/// Offsets retention: an empty group idle past it is deleted (state and offsets); a group
/// with members, and one that committed lately, stay.
pub(crate) async fn idle_groups_expire_after_offsets_retention(backends: Backends) {
    let config = LogConfig {
        offsets_retention: Duration::from_secs(2),
        ..group_config()
    };
    let h = Harness::start_with(backends, config).await;
    h.create_topic("orders", 2).await;
    let log = h.log();
    let commit = |offset| {
        vec![GroupOffset {
            partition: 0,
            offset,
            metadata: String::new(),
        }]
    };
    // "idle": committed from outside, then nothing. "left": had a member that left.
    log.commit_group_offsets("idle", "orders", &commit(1), None)
        .await
        .unwrap();
    let gone = join(
        log,
        native_join("left", "", &["orders"], Duration::from_secs(10)),
    )
    .await;
    log.commit_group_offsets("left", "orders", &commit(2), Some(&member(&gone)))
        .await
        .unwrap();
    log.leave_group("left", vec![gone.member_id.clone()])
        .await
        .unwrap();
    // "live": a member that keeps heartbeating.
    let live = join(
        log,
        native_join("live", "", &["orders"], Duration::from_secs(10)),
    )
    .await;
    log.commit_group_offsets("live", "orders", &commit(3), Some(&member(&live)))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    loop {
        log.heartbeat("live", member(&live)).await.unwrap();
        // "busy": empty, but commits now and then.
        log.commit_group_offsets("busy", "orders", &commit(4), None)
            .await
            .unwrap();
        let idle = log
            .fetch_group_offsets("idle", "orders", &[])
            .await
            .unwrap();
        let left = log
            .fetch_group_offsets("left", "orders", &[])
            .await
            .unwrap();
        if idle.is_empty() && left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "idle groups not deleted after 15 s: idle {idle:?}, left {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        log.fetch_group_offsets("live", "orders", &[])
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        log.fetch_group_offsets("busy", "orders", &[])
            .await
            .unwrap()
            .len(),
        1
    );
    // The deleted group's state went too: its name starts afresh at generation 1.
    let again = join(
        log,
        native_join("left", "", &["orders"], Duration::from_secs(10)),
    )
    .await;
    assert_eq!(again.generation, 1);
    h.log().shutdown().await;
}
