//! Topic names found missing in the metadata store a moment ago, so a client asking for
//! the same missing topic again and again costs no metadata read each time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long a name is remembered as missing. Short: a topic created through another agent
/// just after a miss is found again within this long.
const REMEMBER: Duration = Duration::from_millis(500);
/// Names remembered at most; a flood of distinct names is bounded by the lookup slots, not
/// by this.
const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct MissingTopics(Mutex<HashMap<String, Instant>>);

impl MissingTopics {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `name` was found missing less than [`REMEMBER`] ago.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.lock()
            .get(name)
            .is_some_and(|at| at.elapsed() < REMEMBER)
    }

    pub(crate) fn insert(&self, name: &str) {
        let mut names = self.lock();
        if names.len() >= CAPACITY {
            names.retain(|_, at| at.elapsed() < REMEMBER);
            if names.len() >= CAPACITY {
                return;
            }
        }
        names.insert(name.to_owned(), Instant::now());
    }

    /// Forgets `name` (this agent just created it).
    pub(crate) fn remove(&self, name: &str) {
        self.lock().remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_are_forgotten_after_a_moment_and_bounded() {
        let missing = MissingTopics::default();
        missing.insert("a");
        assert!(missing.contains("a"));
        assert!(!missing.contains("b"));
        tokio::time::sleep(REMEMBER).await;
        assert!(!missing.contains("a"));
        for i in 0..CAPACITY + 10 {
            missing.insert(&i.to_string());
        }
        assert_eq!(missing.lock().len(), CAPACITY);
        missing.remove("0");
        assert!(!missing.contains("0"));
    }
}
