use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// A shared, lockable source of randomness (ids, backoff jitter, rendezvous tie-breaks).
///
/// Production code seeds it from the OS; tests seed it with a constant so runs repeat.
#[derive(Debug, Clone)]
pub struct SharedRng(Arc<Mutex<StdRng>>);

impl SharedRng {
    /// A uniformly random `u64`.
    pub fn next_u64(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .next_u64()
    }

    /// Fills `dest` with random bytes.
    pub fn fill(&self, dest: &mut [u8]) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fill_bytes(dest);
    }

    /// A float in `[0, 1)`, for jitter.
    pub fn unit(&self) -> f64 {
        // 53 random mantissa bits give every representable step in [0, 1).
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A generator seeded from the operating system.
pub fn system_rng() -> SharedRng {
    SharedRng(Arc::new(Mutex::new(StdRng::from_os_rng())))
}

/// A deterministic generator for tests and simulations.
pub fn seeded_rng(seed: u64) -> SharedRng {
    SharedRng(Arc::new(Mutex::new(StdRng::seed_from_u64(seed))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_generators_repeat() {
        let a = seeded_rng(7);
        let b = seeded_rng(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let u = a.unit();
        assert!((0.0..1.0).contains(&u));
    }
}
