//! Server-side partition assignment for the consumer groups whose coordinator assigns.
//!
//! Three strategies, named as Kafka clients name them so a member can offer the same list
//! to either face:
//!
//! - **range**: each topic on its own; its subscribers, in id order, take consecutive runs
//!   of partitions, the first ones one more when the count doesn't divide. Members that
//!   consume several topics get the same partition numbers of each, which co-partitioned
//!   joins rely on, at the price of piling every topic's extra partition on the same members.
//! - **roundrobin**: all partitions of all topics, in order, dealt one at a time to the
//!   members in id order, passing over a member that doesn't consume the partition's topic.
//!   Counts differ by at most one when everyone consumes the same topics.
//! - **sticky**: as balanced as roundrobin, but starts from what each member owned in the
//!   previous generation and moves only what balance requires, so one member joining or
//!   leaving doesn't make every other member drop its position and caches.
//!
//! Each is a pure function of its input, whatever order the members arrive in, so the
//! result doesn't depend on which agent coordinates the group or how it stores members.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// A partition assignment strategy, by its Kafka-compatible name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Assignor {
    Range,
    RoundRobin,
    Sticky,
}

impl Assignor {
    pub(crate) const ALL: [Assignor; 3] = [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky];

    /// "range", "roundrobin", "sticky": the names members put in their protocol list.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::Sticky => "sticky",
        }
    }

    /// Parses a name case-insensitively; clients spell round robin three ways, so all three
    /// are accepted.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        let canonical = match name.as_str() {
            "round-robin" | "round_robin" => "roundrobin",
            other => other,
        };
        Self::ALL
            .into_iter()
            .find(|assignor| assignor.name() == canonical)
    }
}

/// One member's input to an assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) member_id: String,
    /// Topics it consumes (may repeat / be unsorted; treated as a set).
    pub(crate) topics: Vec<String>,
    /// What it owned in the previous generation, topic -> partitions. Only Sticky looks at
    /// it; it may be stale (topics shrunk or deleted, another member claiming the same).
    pub(crate) owned: BTreeMap<String, Vec<u32>>,
}

/// member_id -> topic -> sorted partitions. Every member appears, possibly with an empty map;
/// a topic of which a member gets nothing is absent from its map.
pub(crate) type Assignment = BTreeMap<String, BTreeMap<String, Vec<u32>>>;

/// Assigns every partition of every subscribed topic that exists in `partitions`
/// (topic -> partition count; subscribed topics missing from it are skipped) to exactly one
/// member subscribed to that topic.
pub(crate) fn assign(
    assignor: Assignor,
    members: &[Subscription],
    partitions: &BTreeMap<String, u32>,
) -> Assignment {
    let problem = Problem::new(members, partitions);
    if problem.members.is_empty() {
        return Assignment::new();
    }
    let owners = match assignor {
        Assignor::Range => range(&problem),
        Assignor::RoundRobin => round_robin(&problem),
        Assignor::Sticky => sticky(&problem),
    };
    problem.collect(&owners)
}

/// A topic that takes part: it has partitions and at least one subscriber.
#[derive(Debug)]
struct Topic<'a> {
    name: &'a str,
    partitions: u32,
    /// Global index of its partition 0.
    first: usize,
}

impl Topic<'_> {
    fn indexes(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.partitions as usize
    }
}

/// The input with names turned into indexes, so the strategies work on vectors.
///
/// Members are in id order and topics in name order, and partitions are numbered topic by
/// topic; sorting global indexes therefore sorts (topic, partition) pairs, and iterating
/// members by index is iterating them by id, which is what makes results independent of
/// input order.
#[derive(Debug)]
struct Problem<'a> {
    members: Vec<&'a Subscription>,
    /// Per member, the topics it consumes that take part, sorted and distinct.
    subscriptions: Vec<Vec<usize>>,
    topics: Vec<Topic<'a>>,
    /// Per topic, the members consuming it, sorted. Never empty.
    subscribers: Vec<Vec<usize>>,
    /// Partitions to assign, over all topics.
    total: usize,
}

impl<'a> Problem<'a> {
    fn new(members: &'a [Subscription], partitions: &'a BTreeMap<String, u32>) -> Self {
        // A duplicate id keeps its last subscription rather than failing the rebalance.
        let by_id: BTreeMap<&str, &Subscription> = members
            .iter()
            .map(|member| (member.member_id.as_str(), member))
            .collect();
        let members: Vec<&Subscription> = by_id.into_values().collect();

        let consumed: BTreeMap<&str, u32> = members
            .iter()
            .flat_map(|member| &member.topics)
            .filter_map(|topic| {
                let (name, &count) = partitions.get_key_value(topic)?;
                (count > 0).then_some((name.as_str(), count))
            })
            .collect();
        let mut topics = Vec::with_capacity(consumed.len());
        let mut total = 0;
        for (name, partitions) in consumed {
            topics.push(Topic {
                name,
                partitions,
                first: total,
            });
            total += partitions as usize;
        }

        let mut problem = Problem {
            members,
            subscriptions: Vec::new(),
            topics,
            subscribers: Vec::new(),
            total,
        };
        problem.subscriptions = problem
            .members
            .iter()
            .map(|member| {
                let mut topics: Vec<usize> = member
                    .topics
                    .iter()
                    .filter_map(|name| problem.topic_index(name))
                    .collect();
                topics.sort_unstable();
                topics.dedup();
                topics
            })
            .collect();
        problem.subscribers = vec![Vec::new(); problem.topics.len()];
        for (member, topics) in problem.subscriptions.iter().enumerate() {
            for &topic in topics {
                problem.subscribers[topic].push(member);
            }
        }
        problem
    }

    fn topic_index(&self, name: &str) -> Option<usize> {
        self.topics
            .binary_search_by(|topic| topic.name.cmp(name))
            .ok()
    }

    /// The partitions `member` owned that it may keep on its own account: they still exist
    /// and it still consumes their topic. Sorted and distinct.
    fn claims(&self, member: usize) -> Vec<usize> {
        let mut claims = Vec::new();
        for (name, partitions) in &self.members[member].owned {
            let Some(index) = self.topic_index(name) else {
                continue;
            };
            if self.subscriptions[member].binary_search(&index).is_err() {
                continue;
            }
            let topic = &self.topics[index];
            claims.extend(
                partitions
                    .iter()
                    .filter(|&&partition| partition < topic.partitions)
                    .map(|&partition| topic.first + partition as usize),
            );
        }
        claims.sort_unstable();
        claims.dedup();
        claims
    }

    /// Whether every member consumes the same topics: only then is a balance within one
    /// partition always reachable, and worth moving partitions for.
    fn identical_subscriptions(&self) -> bool {
        self.subscriptions.windows(2).all(|pair| pair[0] == pair[1])
    }

    fn collect(&self, owners: &[Option<usize>]) -> Assignment {
        let mut assigned: Vec<BTreeMap<String, Vec<u32>>> =
            vec![BTreeMap::new(); self.members.len()];
        for topic in &self.topics {
            for (partition, owner) in (0..topic.partitions).zip(&owners[topic.indexes()]) {
                let Some(member) = *owner else { continue };
                match assigned[member].get_mut(topic.name) {
                    Some(list) => list.push(partition),
                    None => {
                        assigned[member].insert(topic.name.to_owned(), vec![partition]);
                    }
                }
            }
        }
        self.members
            .iter()
            .zip(assigned)
            .map(|(member, topics)| (member.member_id.clone(), topics))
            .collect()
    }
}

fn range(problem: &Problem<'_>) -> Vec<Option<usize>> {
    let mut owners = vec![None; problem.total];
    for (topic, subscribers) in problem.topics.iter().zip(&problem.subscribers) {
        let count = topic.partitions as usize;
        let (each, extra) = (count / subscribers.len(), count % subscribers.len());
        let mut next = topic.first;
        for (rank, &member) in subscribers.iter().enumerate() {
            let take = each + usize::from(rank < extra);
            owners[next..next + take].fill(Some(member));
            next += take;
        }
    }
    owners
}

fn round_robin(problem: &Problem<'_>) -> Vec<Option<usize>> {
    let mut owners = vec![None; problem.total];
    // The turn passes around all members; looking up the next subscriber by binary search
    // keeps differing subscriptions from costing a walk over the whole group per partition.
    let mut turn = 0;
    for (topic, subscribers) in problem.topics.iter().zip(&problem.subscribers) {
        for owner in &mut owners[topic.indexes()] {
            let at = subscribers.partition_point(|&member| member < turn);
            let member = subscribers.get(at).unwrap_or(&subscribers[0]);
            *owner = Some(*member);
            turn = member + 1;
        }
    }
    owners
}

fn sticky(problem: &Problem<'_>) -> Vec<Option<usize>> {
    let members = problem.members.len();
    let mut owners = vec![None; problem.total];

    // Keep what only one member claims; a partition claimed twice (a member that missed a
    // generation, or state from two coordinators) goes to the claimant holding less, so the
    // tie-break itself leans towards balance.
    let claims: Vec<Vec<usize>> = (0..members).map(|member| problem.claims(member)).collect();
    let mut claimants = vec![0_u32; problem.total];
    for &partition in claims.iter().flatten() {
        claimants[partition] += 1;
    }
    let mut kept = vec![0_usize; members];
    let mut contested = Vec::new();
    for (member, claims) in claims.iter().enumerate() {
        for &partition in claims {
            if claimants[partition] == 1 {
                owners[partition] = Some(member);
                kept[member] += 1;
            } else {
                contested.push((partition, member));
            }
        }
    }
    contested.sort_unstable();
    for group in contested.chunk_by(|a, b| a.0 == b.0) {
        let winner = group
            .iter()
            .map(|&(_, member)| member)
            .min_by_key(|&member| (kept[member], member));
        if let Some(winner) = winner {
            owners[group[0].0] = Some(winner);
            kept[winner] += 1;
        }
    }

    // Trim each member to its quota; what it gives up is its highest partitions.
    let identical = problem.identical_subscriptions();
    let quotas = quotas(problem, identical, &kept);
    for (member, claims) in claims.iter().enumerate() {
        let mut room = quotas[member];
        for &partition in claims {
            if owners[partition] == Some(member) {
                if room == 0 {
                    owners[partition] = None;
                } else {
                    room -= 1;
                }
            }
        }
    }

    // Hand out the rest, topic by topic, each partition to the least loaded subscriber.
    let mut counts = vec![0_usize; members];
    for &member in owners.iter().flatten() {
        counts[member] += 1;
    }
    for (topic, subscribers) in problem.topics.iter().zip(&problem.subscribers) {
        let slots = &mut owners[topic.indexes()];
        if slots.iter().all(Option::is_some) {
            continue;
        }
        let mut least: BinaryHeap<Reverse<(usize, usize)>> = subscribers
            .iter()
            .map(|&member| Reverse((counts[member], member)))
            .collect();
        for slot in slots.iter_mut().filter(|slot| slot.is_none()) {
            if let Some(Reverse((count, member))) = least.pop() {
                *slot = Some(member);
                counts[member] = count + 1;
                least.push(Reverse((count + 1, member)));
            }
        }
    }

    // With exact quotas the counts are already within one; this only guards that promise.
    if identical {
        rebalance(&mut owners, members);
    }
    owners
}

/// How many of its claims each member may keep.
///
/// With identical subscriptions the final counts are fixed up to who gets the `total %
/// members` larger shares; giving those to the members that kept most keeps the most. With
/// differing subscriptions no exact balance exists, so an even share of the whole only stops
/// one member from hoarding; what it gives up returns to it if nobody else can take it.
fn quotas(problem: &Problem<'_>, identical: bool, kept: &[usize]) -> Vec<usize> {
    let members = kept.len();
    if identical {
        let (each, extra) = (problem.total / members, problem.total % members);
        let mut by_kept: Vec<usize> = (0..members).collect();
        by_kept.sort_unstable_by_key(|&member| (Reverse(kept[member]), member));
        let mut quotas = vec![each; members];
        for &member in &by_kept[..extra] {
            quotas[member] += 1;
        }
        quotas
    } else {
        let active = problem
            .subscriptions
            .iter()
            .filter(|topics| !topics.is_empty())
            .count();
        vec![problem.total.div_ceil(active.max(1)); members]
    }
}

/// Moves partitions from the most to the least loaded member until counts are within one.
/// Only valid when every member may own every partition.
fn rebalance(owners: &mut [Option<usize>], members: usize) {
    let mut held: Vec<Vec<usize>> = vec![Vec::new(); members];
    for (partition, owner) in owners.iter().enumerate() {
        if let Some(member) = *owner {
            held[member].push(partition);
        }
    }
    let mut by_count: BTreeSet<(usize, usize)> = held
        .iter()
        .enumerate()
        .map(|(member, partitions)| (partitions.len(), member))
        .collect();
    while let (Some(&(low, to)), Some(&(high, from))) = (by_count.first(), by_count.last()) {
        if high <= low + 1 {
            break;
        }
        let Some(partition) = held[from].pop() else {
            break;
        };
        owners[partition] = Some(to);
        held[to].push(partition);
        by_count.remove(&(low, to));
        by_count.remove(&(high, from));
        by_count.insert((low + 1, to));
        by_count.insert((high - 1, from));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    /// Topics the random inputs draw from; "gone" never has partitions.
    const TOPICS: [&str; 5] = ["t0", "t1", "t2", "t3", "gone"];

    fn member(id: &str, topics: &[&str]) -> Subscription {
        Subscription {
            member_id: id.to_owned(),
            topics: topics.iter().map(|&topic| topic.to_owned()).collect(),
            owned: BTreeMap::new(),
        }
    }

    fn owning(mut member: Subscription, owned: &[(&str, &[u32])]) -> Subscription {
        member.owned = topics(owned);
        member
    }

    fn counts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
        topics
            .iter()
            .map(|&(topic, count)| (topic.to_owned(), count))
            .collect()
    }

    fn topics(topics: &[(&str, &[u32])]) -> BTreeMap<String, Vec<u32>> {
        topics
            .iter()
            .map(|&(topic, partitions)| (topic.to_owned(), partitions.to_vec()))
            .collect()
    }

    /// (topic, partition) -> owner, failing on a partition owned twice.
    fn owners(assignment: &Assignment) -> BTreeMap<(String, u32), String> {
        let mut owners = BTreeMap::new();
        for (member, topics) in assignment {
            for (topic, partitions) in topics {
                for &partition in partitions {
                    let previous = owners.insert((topic.clone(), partition), member.clone());
                    assert_eq!(previous, None, "{topic}/{partition} assigned twice");
                }
            }
        }
        owners
    }

    fn sizes(assignment: &Assignment) -> Vec<usize> {
        assignment
            .values()
            .map(|topics| topics.values().map(Vec::len).sum())
            .collect()
    }

    fn spread(sizes: &[usize]) -> usize {
        sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0)
    }

    /// Every partition of a consumed topic owned once by a consumer, nothing else owned.
    fn check(
        members: &[Subscription],
        partitions: &BTreeMap<String, u32>,
        assignment: &Assignment,
    ) -> Result<(), TestCaseError> {
        let ids: BTreeSet<&String> = members.iter().map(|member| &member.member_id).collect();
        prop_assert_eq!(assignment.keys().collect::<BTreeSet<_>>(), ids);
        for topics in assignment.values() {
            for partitions in topics.values() {
                prop_assert!(!partitions.is_empty());
                prop_assert!(partitions.windows(2).all(|pair| pair[0] < pair[1]));
            }
        }
        let owners = owners(assignment);
        let mut expected = BTreeSet::new();
        for (topic, &count) in partitions {
            if members.iter().any(|member| member.topics.contains(topic)) {
                expected.extend((0..count).map(|partition| (topic.clone(), partition)));
            }
        }
        prop_assert_eq!(owners.keys().cloned().collect::<BTreeSet<_>>(), expected);
        for ((topic, _), owner) in &owners {
            let member = members.iter().find(|member| &member.member_id == owner);
            prop_assert!(member.is_some_and(|member| member.topics.contains(topic)));
        }
        Ok(())
    }

    /// The most partitions the members can keep under balanced counts, given how many each
    /// owned before (0 for newcomers): the larger shares go to the largest owners.
    fn most_keepable(mut previous: Vec<usize>, total: usize) -> usize {
        let members = previous.len();
        previous.sort_unstable_by(|a, b| b.cmp(a));
        previous
            .iter()
            .enumerate()
            .map(|(rank, &owned)| owned.min(total / members + usize::from(rank < total % members)))
            .sum()
    }

    fn arb_topic() -> impl Strategy<Value = String> {
        prop::sample::select(&TOPICS[..]).prop_map(str::to_owned)
    }

    fn arb_partitions() -> impl Strategy<Value = BTreeMap<String, u32>> {
        prop::collection::vec(0_u32..=20, 1..=4).prop_map(|counts| {
            counts
                .into_iter()
                .enumerate()
                .map(|(index, count)| (format!("t{index}"), count))
                .collect()
        })
    }

    /// Stale and overlapping ownership: unknown topics, partitions past the end, claims that
    /// collide with other members'.
    fn arb_owned() -> impl Strategy<Value = BTreeMap<String, Vec<u32>>> {
        prop::collection::btree_map(arb_topic(), prop::collection::vec(0_u32..24, 0..10), 0..4)
    }

    fn arb_members() -> impl Strategy<Value = Vec<Subscription>> {
        prop::collection::vec(
            (prop::collection::vec(arb_topic(), 0..6), arb_owned()),
            1..=8,
        )
        .prop_map(|members| {
            members
                .into_iter()
                .enumerate()
                .map(|(index, (topics, owned))| Subscription {
                    member_id: format!("m{index}"),
                    topics,
                    owned,
                })
                .collect()
        })
    }

    /// Members that all consume the same topics, each listing them in its own order.
    fn arb_identical() -> impl Strategy<Value = Vec<Subscription>> {
        (
            prop::collection::btree_set(arb_topic(), 1..=5),
            prop::collection::vec((arb_owned(), any::<bool>()), 1..=8),
        )
            .prop_map(|(topics, members)| {
                members
                    .into_iter()
                    .enumerate()
                    .map(|(index, (owned, shuffle))| {
                        let mut topics: Vec<String> = topics.iter().cloned().collect();
                        if shuffle {
                            topics.reverse();
                            topics.push(topics[0].clone());
                        }
                        Subscription {
                            member_id: format!("m{index}"),
                            topics,
                            owned,
                        }
                    })
                    .collect()
            })
    }

    fn shuffled(
        members: impl Strategy<Value = Vec<Subscription>>,
    ) -> impl Strategy<Value = (Vec<Subscription>, Vec<Subscription>)> {
        members.prop_flat_map(|members| (Just(members.clone()), Just(members).prop_shuffle()))
    }

    proptest! {
        #[test]
        fn every_consumed_partition_is_assigned_once_to_a_consumer(
            (members, reordered) in shuffled(arb_members()),
            partitions in arb_partitions(),
        ) {
            for assignor in Assignor::ALL {
                let assignment = assign(assignor, &members, &partitions);
                check(&members, &partitions, &assignment)?;
                prop_assert_eq!(&assign(assignor, &reordered, &partitions), &assignment);
            }
        }

        #[test]
        fn identical_subscriptions_balance_within_one(
            (members, reordered) in shuffled(arb_identical()),
            partitions in arb_partitions(),
        ) {
            for assignor in Assignor::ALL {
                let assignment = assign(assignor, &members, &partitions);
                check(&members, &partitions, &assignment)?;
                prop_assert_eq!(&assign(assignor, &reordered, &partitions), &assignment);
                if assignor != Assignor::Range {
                    prop_assert!(spread(&sizes(&assignment)) <= 1, "{assignor:?}: {assignment:?}");
                }
            }
        }

        #[test]
        fn sticky_moves_only_what_balance_requires(
            members in arb_identical(),
            partitions in arb_partitions(),
            leaver in any::<prop::sample::Index>(),
            join in any::<bool>(),
        ) {
            let before = assign(Assignor::Sticky, &members, &partitions);
            let mut next: Vec<Subscription> = members
                .iter()
                .map(|member| Subscription {
                    owned: before[&member.member_id].clone(),
                    ..member.clone()
                })
                .collect();
            let mut leaver_owned = None;
            if join || next.len() == 1 {
                next.push(Subscription {
                    member_id: "new".to_owned(),
                    topics: members[0].topics.clone(),
                    owned: BTreeMap::new(),
                });
            } else {
                let gone = next.remove(leaver.index(next.len()));
                leaver_owned = Some(gone.owned.values().map(Vec::len).sum::<usize>());
            }
            let after = assign(Assignor::Sticky, &next, &partitions);
            check(&next, &partitions, &after)?;
            prop_assert!(spread(&sizes(&after)) <= 1);

            let (old, new) = (owners(&before), owners(&after));
            let moved = new
                .iter()
                .filter(|(partition, owner)| old.get(*partition) != Some(owner))
                .count();
            let previous = next
                .iter()
                .map(|member| member.owned.values().map(Vec::len).sum())
                .collect();
            prop_assert_eq!(moved, new.len() - most_keepable(previous, new.len()));
            if let Some(leaver_owned) = leaver_owned {
                prop_assert_eq!(moved, leaver_owned);
            }
        }

        #[test]
        fn sticky_is_stable_when_nothing_changes(
            members in arb_identical(),
            partitions in arb_partitions(),
        ) {
            let first = assign(Assignor::Sticky, &members, &partitions);
            let again: Vec<Subscription> = members
                .iter()
                .map(|member| Subscription {
                    owned: first[&member.member_id].clone(),
                    ..member.clone()
                })
                .collect();
            prop_assert_eq!(assign(Assignor::Sticky, &again, &partitions), first);
        }
    }

    #[test]
    fn range_gives_the_first_members_the_extra_partition_of_each_topic() {
        let members = [member("m2", &["t0", "t1"]), member("m1", &["t1", "t0"])];
        let partitions = counts(&[("t0", 3), ("t1", 3)]);
        let expected = Assignment::from([
            ("m1".to_owned(), topics(&[("t0", &[0, 1]), ("t1", &[0, 1])])),
            ("m2".to_owned(), topics(&[("t0", &[2]), ("t1", &[2])])),
        ]);
        assert_eq!(assign(Assignor::Range, &members, &partitions), expected);

        let members = [
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        let expected = Assignment::from([
            ("a".to_owned(), topics(&[("t", &[0, 1, 2])])),
            ("b".to_owned(), topics(&[("t", &[3, 4])])),
            ("c".to_owned(), topics(&[("t", &[5, 6])])),
        ]);
        assert_eq!(
            assign(Assignor::Range, &members, &counts(&[("t", 7)])),
            expected
        );
    }

    #[test]
    fn round_robin_deals_across_topics() {
        let members = [member("m1", &["t0", "t1"]), member("m2", &["t0", "t1"])];
        let partitions = counts(&[("t0", 3), ("t1", 3)]);
        let expected = Assignment::from([
            ("m1".to_owned(), topics(&[("t0", &[0, 2]), ("t1", &[1])])),
            ("m2".to_owned(), topics(&[("t0", &[1]), ("t1", &[0, 2])])),
        ]);
        assert_eq!(
            assign(Assignor::RoundRobin, &members, &partitions),
            expected
        );
    }

    #[test]
    fn round_robin_passes_over_members_not_consuming_the_topic() {
        let members = [
            member("c0", &["t0"]),
            member("c1", &["t0", "t1"]),
            member("c2", &["t0", "t1", "t2"]),
        ];
        let partitions = counts(&[("t0", 1), ("t1", 2), ("t2", 3)]);
        let expected = Assignment::from([
            ("c0".to_owned(), topics(&[("t0", &[0])])),
            ("c1".to_owned(), topics(&[("t1", &[0])])),
            ("c2".to_owned(), topics(&[("t1", &[1]), ("t2", &[0, 1, 2])])),
        ]);
        assert_eq!(
            assign(Assignor::RoundRobin, &members, &partitions),
            expected
        );
    }

    #[test]
    fn sticky_spreads_a_leavers_partitions_and_keeps_the_rest() {
        let members = [
            owning(member("a", &["t"]), &[("t", &[0, 1])]),
            owning(member("b", &["t"]), &[("t", &[2, 3])]),
        ];
        let expected = Assignment::from([
            ("a".to_owned(), topics(&[("t", &[0, 1, 4])])),
            ("b".to_owned(), topics(&[("t", &[2, 3, 5])])),
        ]);
        assert_eq!(
            assign(Assignor::Sticky, &members, &counts(&[("t", 6)])),
            expected
        );
    }

    #[test]
    fn sticky_gives_a_doubly_claimed_partition_to_the_claimant_holding_less() {
        let members = [
            owning(member("a", &["t"]), &[("t", &[0, 1])]),
            owning(member("b", &["t"]), &[("t", &[0])]),
        ];
        let expected = Assignment::from([
            ("a".to_owned(), topics(&[("t", &[1, 2])])),
            ("b".to_owned(), topics(&[("t", &[0])])),
        ]);
        assert_eq!(
            assign(Assignor::Sticky, &members, &counts(&[("t", 3)])),
            expected
        );
    }

    #[test]
    fn sticky_drops_stale_claims() {
        // "b" no longer consumes "u", "t" shrank to 2 partitions, "gone" was deleted.
        let members = [
            owning(member("a", &["t", "u"]), &[("t", &[0]), ("u", &[0])]),
            owning(
                member("b", &["t"]),
                &[("t", &[1, 5]), ("u", &[1]), ("gone", &[0])],
            ),
        ];
        let expected = Assignment::from([
            ("a".to_owned(), topics(&[("t", &[0]), ("u", &[0, 1])])),
            ("b".to_owned(), topics(&[("t", &[1])])),
        ]);
        let partitions = counts(&[("t", 2), ("u", 2)]);
        assert_eq!(assign(Assignor::Sticky, &members, &partitions), expected);
    }

    #[test]
    fn edge_cases() {
        let partitions = counts(&[("t", 4), ("empty", 0)]);
        for assignor in Assignor::ALL {
            assert_eq!(assign(assignor, &[], &partitions), Assignment::new());

            let members = [member("a", &[]), member("b", &["t", "empty", "missing"])];
            let expected = Assignment::from([
                ("a".to_owned(), BTreeMap::new()),
                ("b".to_owned(), topics(&[("t", &[0, 1, 2, 3])])),
            ]);
            assert_eq!(assign(assignor, &members, &partitions), expected);

            let twice = [member("a", &["t"]), member("a", &["t"])];
            let assignment = assign(assignor, &twice, &partitions);
            assert_eq!(assignment.len(), 1);
            assert_eq!(owners(&assignment).len(), 4);
        }
    }

    #[test]
    fn names_round_trip_and_accept_client_spellings() {
        for assignor in Assignor::ALL {
            assert_eq!(Assignor::from_name(assignor.name()), Some(assignor));
        }
        for name in ["RoundRobin", "round-robin", "ROUND_ROBIN"] {
            assert_eq!(Assignor::from_name(name), Some(Assignor::RoundRobin));
        }
        assert_eq!(Assignor::from_name("Sticky"), Some(Assignor::Sticky));
        assert_eq!(Assignor::from_name("cooperative-sticky"), None);
        assert_eq!(Assignor::from_name(""), None);
    }
}
