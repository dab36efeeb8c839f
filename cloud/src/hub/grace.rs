//! When channels' previous tokens stop being accepted. A rotation with a grace period leaves
//! connections on the previous token; at the grace's end housekeeping closes them (4005).
//! Only the channels whose grace ended are visited: housekeeping used to check every
//! connection's token every second, and with 10,000 idle connectors that took ~8 ms of a
//! worker once a second, which showed in ingest p99 (issue #13; docs/BENCHMARKS.md, "Idle
//! connectors", session 17).

use std::collections::BTreeSet;
use std::sync::Arc;

use connect_protocol::time::Timestamp;
use parking_lot::Mutex;

/// Grace ends still to come, by time. Holds one entry per channel rotated with a grace that
/// has not ended yet (a later rotation of the same channel adds its own; the earlier one then
/// finds nothing to close).
#[derive(Default)]
pub(super) struct GraceEnds(Mutex<BTreeSet<(Timestamp, Arc<str>)>>);

impl GraceEnds {
    pub fn schedule(&self, at: Timestamp, channel: &Arc<str>) {
        self.0.lock().insert((at, channel.clone()));
    }

    /// Takes the channels whose grace ended before `now`.
    pub fn take_due(&self, now: Timestamp) -> Vec<Arc<str>> {
        let mut ends = self.0.lock();
        let later = ends.split_off(&(now, Arc::from("")));
        let due = std::mem::replace(&mut *ends, later);
        due.into_iter().map(|(_, name)| name).collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn only_ended_graces_are_taken_and_each_once() {
        let g = GraceEnds::default();
        let now = Timestamp::now();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        g.schedule(Timestamp(now.0 - Duration::seconds(2)), &a);
        g.schedule(Timestamp(now.0 - Duration::milliseconds(1)), &b);
        g.schedule(Timestamp(now.0 + Duration::seconds(5)), &c);
        // The same end scheduled twice is one entry.
        g.schedule(Timestamp(now.0 + Duration::seconds(5)), &c);
        assert_eq!(g.len(), 3);
        let due: Vec<String> = g.take_due(now).iter().map(|n| n.to_string()).collect();
        assert_eq!(due, ["a", "b"]);
        assert!(g.take_due(now).is_empty(), "taken once");
        let later = Timestamp(now.0 + Duration::seconds(6));
        assert_eq!(g.take_due(later).len(), 1);
        assert_eq!(g.len(), 0);
    }
}
