//! A Bloom filter over 64-bit hashes: the sold-out cache's holder set in ~2 bytes a holder
//! instead of ~16, so a campaign of millions of holders fits beside the pod's other needs.
//!
//! It never forgets a member (no false negatives), so "absent" is certain: that user is
//! not a holder and gets 410 from memory. "Maybe present" (a holder, or a false positive
//! at about the configured rate) goes to Redis for the exact answer.

/// False positives sized for: one non-holder in a thousand costs a Redis call.
pub const FALSE_POSITIVE_RATE: f64 = 0.001;

/// The largest filter one campaign may take, whatever its stock: past the size this caps
/// the false-positive rate rises (more Redis calls), memory does not.
pub const MAX_BYTES: usize = 64 << 20;

/// Hash functions derived per member, at most.
const MAX_HASHES: u32 = 16;

/// A fixed-size Bloom filter; members are already-hashed `u64`s.
pub struct Bloom {
    words: Box<[u64]>,
    bits: u64,
    hashes: u32,
}

impl Bloom {
    /// A filter for about `expected` members at `fp_rate`, no larger than `max_bytes`.
    pub fn new(expected: u64, fp_rate: f64, max_bytes: usize) -> Self {
        let n = expected.max(1) as f64;
        let ln2 = std::f64::consts::LN_2;
        let wanted = (-n * fp_rate.clamp(1e-9, 0.5).ln() / (ln2 * ln2)).ceil();
        let cap = (max_bytes.max(8) as f64) * 8.0;
        let words = (wanted.clamp(64.0, cap) / 64.0).ceil() as usize;
        let bits = words as u64 * 64;
        let hashes = ((bits as f64 / n) * ln2)
            .round()
            .clamp(1.0, MAX_HASHES as f64) as u32;
        Self {
            words: vec![0; words].into_boxed_slice(),
            bits,
            hashes,
        }
    }

    /// Adds `hash`.
    pub fn insert(&mut self, hash: u64) {
        for i in self.positions(hash) {
            self.words[(i / 64) as usize] |= 1 << (i % 64);
        }
    }

    /// `false` when `hash` was certainly never inserted.
    pub fn may_contain(&self, hash: u64) -> bool {
        self.positions(hash)
            .all(|i| self.words[(i / 64) as usize] & (1 << (i % 64)) != 0)
    }

    /// Memory held by the bits.
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// The `hashes` bit positions of `hash`: each from its own splitmix64 step, not by
    /// double hashing, whose positions cluster in small filters (a false-positive rate far
    /// above the configured one).
    fn positions(&self, hash: u64) -> impl Iterator<Item = u64> + use<> {
        let bits = self.bits;
        (1..=u64::from(self.hashes)).map(move |i| {
            let h = mix(hash.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
            ((u128::from(h) * u128::from(bits)) >> 64) as u64
        })
    }
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_is_found() {
        let mut b = Bloom::new(100_000, FALSE_POSITIVE_RATE, MAX_BYTES);
        for i in 0..100_000u64 {
            b.insert(mix(i ^ 0xdead_beef));
        }
        assert!((0..100_000u64).all(|i| b.may_contain(mix(i ^ 0xdead_beef))));
    }

    #[test]
    fn false_positives_stay_near_the_configured_rate() {
        let n = 200_000u64;
        let mut b = Bloom::new(n, FALSE_POSITIVE_RATE, MAX_BYTES);
        for i in 0..n {
            b.insert(mix(i));
        }
        let probes = 1_000_000u64;
        let hits = (n..n + probes).filter(|&i| b.may_contain(mix(i))).count();
        let rate = hits as f64 / probes as f64;
        assert!(
            rate < FALSE_POSITIVE_RATE * 2.0,
            "false-positive rate {rate}"
        );
        assert!(hits > 0, "a filter this size has some false positives");
    }

    #[test]
    fn a_small_filter_keeps_its_rate() {
        // Three holders: the smallest filter, where clustered positions once showed.
        let mut b = Bloom::new(3, FALSE_POSITIVE_RATE, MAX_BYTES);
        for i in 0..3u64 {
            b.insert(mix(i));
        }
        let hits = (3..1_000_003u64).filter(|&i| b.may_contain(mix(i))).count();
        assert!(hits < 1_000, "{hits} false positives in a million");
    }

    #[test]
    fn size_follows_the_expected_count_and_stops_at_the_cap() {
        let ten_million = Bloom::new(10_000_000, FALSE_POSITIVE_RATE, MAX_BYTES);
        // ~14.4 bits a member at 0.1 %: about 18 MB, against ~150 MB for a HashSet<u64>.
        assert!((17 << 20..19 << 20).contains(&ten_million.bytes()));
        let capped = Bloom::new(1_000_000_000, FALSE_POSITIVE_RATE, 1 << 20);
        assert_eq!(capped.bytes(), 1 << 20);
        assert!(capped.hashes >= 1);
        let tiny = Bloom::new(0, FALSE_POSITIVE_RATE, MAX_BYTES);
        assert_eq!(tiny.bytes(), 8);
    }

    #[test]
    fn a_capped_filter_still_finds_every_member() {
        let mut b = Bloom::new(50_000, FALSE_POSITIVE_RATE, 1024);
        for i in 0..50_000u64 {
            b.insert(mix(i));
        }
        assert!((0..50_000u64).all(|i| b.may_contain(mix(i))));
    }
}
