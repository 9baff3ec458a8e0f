//! The global in-flight cap: overload is answered at once with 503, never queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::IntGauge;

/// Counts requests in flight against a fixed cap.
#[derive(Clone, Debug)]
pub struct InFlight {
    now: Arc<AtomicUsize>,
    cap: usize,
}

impl InFlight {
    /// A cap of `cap` concurrent requests.
    pub fn new(cap: usize) -> Self {
        Self {
            now: Arc::new(AtomicUsize::new(0)),
            cap: cap.max(1),
        }
    }

    /// Takes a slot, or `None` when all are taken; `gauge` mirrors the count.
    pub(super) fn try_acquire(&self, gauge: &IntGauge) -> Option<Slot> {
        let prev = self.now.fetch_add(1, Ordering::AcqRel);
        if prev >= self.cap {
            self.now.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        gauge.inc();
        Some(Slot(self.now.clone(), gauge.clone()))
    }
}

/// A taken slot, given back on drop (also when the client goes away mid-request).
pub(super) struct Slot(Arc<AtomicUsize>, IntGauge);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_exact_and_slots_come_back() {
        let f = InFlight::new(2);
        let g = IntGauge::new("g", "g").unwrap();
        let a = f.try_acquire(&g).unwrap();
        let _b = f.try_acquire(&g).unwrap();
        assert!(f.try_acquire(&g).is_none());
        assert_eq!(g.get(), 2);
        drop(a);
        assert_eq!(g.get(), 1);
        assert!(f.try_acquire(&g).is_some());
    }
}
