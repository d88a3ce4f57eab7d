//! Which agent should lead a partition: rendezvous (highest-random-weight) hashing over the
//! live agents. Every agent computes the same answer from the same membership, and when an
//! agent joins or leaves only the partitions it gains or loses move.
//!
//! The hash is spelled out here (FNV-1a, then a SplitMix64 finaliser) rather than taken from
//! `std`, whose hasher may change between Rust releases: agents of different builds must agree.

use shale_common::TopicId;

/// The agent among `agents` that should lead `(topic, partition)`, or `None` if there are none.
pub(crate) fn owner<'a>(
    agents: impl IntoIterator<Item = &'a str>,
    topic: TopicId,
    partition: u32,
) -> Option<&'a str> {
    agents
        .into_iter()
        .max_by_key(|agent| (score(agent, topic, partition), *agent))
}

/// The agent among `agents` that should coordinate consumer group `group`.
pub(crate) fn group_owner<'a>(
    agents: impl IntoIterator<Item = &'a str>,
    group: &str,
) -> Option<&'a str> {
    agents.into_iter().max_by_key(|agent| {
        // A separator byte no agent id holds keeps groups apart from partitions.
        let bytes = agent
            .as_bytes()
            .iter()
            .chain(&[1u8])
            .chain(group.as_bytes());
        (splitmix64(fnv1a(bytes)), *agent)
    })
}

fn score(agent: &str, topic: TopicId, partition: u32) -> u64 {
    let partition_bytes = partition.to_be_bytes();
    let bytes = agent
        .as_bytes()
        .iter()
        .chain(&[0u8])
        .chain(topic.as_bytes())
        .chain(&partition_bytes);
    splitmix64(fnv1a(bytes))
}

fn fnv1a<'a>(bytes: impl Iterator<Item = &'a u8>) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

fn splitmix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_spread_over_agents_and_only_the_leavers_move() {
        let agents = ["a", "b", "c"];
        let groups: Vec<String> = (0..300).map(|g| format!("group-{g}")).collect();
        let owners: Vec<&str> = groups
            .iter()
            .map(|g| group_owner(agents, g).unwrap())
            .collect();
        for agent in agents {
            let count = owners.iter().filter(|o| **o == agent).count();
            assert!((60..=140).contains(&count), "{agent} owns {count} of 300");
        }
        for (group, owner) in groups.iter().zip(&owners) {
            let after = group_owner(["a", "b"], group).unwrap();
            if *owner != "c" {
                assert_eq!(after, *owner, "{group} moved though its owner stayed");
            }
        }
        assert_eq!(group_owner([], "g"), None);
    }

    #[test]
    fn one_agent_owns_everything() {
        let topic = TopicId([1; 16]);
        for partition in 0..100 {
            assert_eq!(owner(["a"], topic, partition), Some("a"));
        }
        assert_eq!(owner([], topic, 0), None);
    }

    #[test]
    fn load_spreads_and_only_the_leaver_moves() {
        let topic = TopicId([7; 16]);
        let three = ["a", "b", "c"];
        let mut counts = [0; 3];
        for partition in 0..3000 {
            let chosen = owner(three, topic, partition).unwrap();
            counts[three.iter().position(|a| *a == chosen).unwrap()] += 1;
            let without_c = owner(["a", "b"], topic, partition).unwrap();
            if chosen != "c" {
                assert_eq!(chosen, without_c, "partition {partition} moved needlessly");
            }
        }
        for count in counts {
            assert!((800..1200).contains(&count), "unbalanced: {counts:?}");
        }
    }

    #[test]
    fn answer_is_stable_across_builds() {
        // Pinned values: changing the hash would move partitions during a rolling upgrade.
        assert_eq!(score("agent-0", TopicId([0; 16]), 0), 0x1259_5d6e_5c56_d13e);
        assert_eq!(score("agent-1", TopicId([0; 16]), 0), 0x335a_0a49_74d6_bea1);
        let owners: Vec<&str> = (0..8)
            .map(|partition| owner(["agent-0", "agent-1"], TopicId([0; 16]), partition).unwrap())
            .collect();
        assert_eq!(
            owners,
            [
                "agent-1", "agent-0", "agent-1", "agent-0", "agent-1", "agent-0", "agent-0",
                "agent-0"
            ]
        );
        // The order agents are listed in does not matter.
        assert_eq!(
            owner(["agent-1", "agent-0"], TopicId([0; 16]), 1),
            Some("agent-0")
        );
    }
}
