//! Evaluating alert rules over a patient's readings: pure, deterministic, by the readings' own
//! times (the device's clock), so the same readings fire the same alerts wherever they are run.
//! The receiving node runs one [`Watch`] per patient and rule, fed every reading of the rule's
//! code in arrival order, and asks [`Watch::silence`] on its own clock for missing data.

use std::collections::VecDeque;

use crate::{AlertRule, Condition, Reading};

/// The most readings a rate-of-change watch remembers.
pub const CHANGE_WINDOW_MAX: usize = 4_096;

/// Why a rule fired, and when (a reading's time, or when the silence began to count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Firing {
    pub at_ms: u64,
}

/// What one rule has seen of one patient's readings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    /// Below/Above: when the current run of readings past the limit began.
    since: Option<u64>,
    /// The condition fired and has not cleared since.
    fired: bool,
    /// Change: the readings within the window, oldest first.
    recent: VecDeque<(u64, i64)>,
    /// Missing: the newest reading's time (or when watching began).
    last_ms: Option<u64>,
}

impl Watch {
    /// A watch that counts silence from `start_ms` (for a missing-data rule, when watching began).
    pub fn starting_at(start_ms: u64) -> Watch {
        Watch {
            last_ms: Some(start_ms),
            ..Watch::default()
        }
    }

    /// Feeds one reading; returns a firing if the rule fires on it. A condition fires once, and
    /// again only after it has cleared.
    pub fn observe(&mut self, rule: &AlertRule, reading: &Reading) -> Option<Firing> {
        if reading.code != rule.code {
            return None;
        }
        match &rule.condition {
            Condition::Below { limit, for_ms } => {
                self.threshold(reading.value < *limit, reading.time_ms, *for_ms)
            }
            Condition::Above { limit, for_ms } => {
                self.threshold(reading.value > *limit, reading.time_ms, *for_ms)
            }
            Condition::Change { delta, within_ms } => {
                let from = reading.time_ms.saturating_sub(*within_ms);
                while self.recent.front().is_some_and(|(time, _)| *time < from) {
                    self.recent.pop_front();
                }
                let changed = self
                    .recent
                    .iter()
                    .any(|(_, value)| value.abs_diff(reading.value) >= delta.unsigned_abs());
                if self.recent.len() == CHANGE_WINDOW_MAX {
                    self.recent.pop_front();
                }
                self.recent.push_back((reading.time_ms, reading.value));
                match (changed, self.fired) {
                    (true, false) => {
                        self.fired = true;
                        Some(Firing {
                            at_ms: reading.time_ms,
                        })
                    }
                    (false, _) => {
                        self.fired = false;
                        None
                    }
                    (true, true) => None,
                }
            }
            Condition::Missing { .. } => {
                self.last_ms = Some(
                    self.last_ms
                        .map_or(reading.time_ms, |last| last.max(reading.time_ms)),
                );
                self.fired = false;
                None
            }
        }
    }

    fn threshold(&mut self, past: bool, time_ms: u64, for_ms: u64) -> Option<Firing> {
        if !past {
            self.since = None;
            self.fired = false;
            return None;
        }
        let since = *self.since.get_or_insert(time_ms);
        if !self.fired && time_ms.saturating_sub(since) >= for_ms {
            self.fired = true;
            return Some(Firing { at_ms: time_ms });
        }
        None
    }

    /// For a missing-data rule: fires once when no reading came for the rule's duration before
    /// `now_ms`, and again only after a reading.
    pub fn silence(&mut self, rule: &AlertRule, now_ms: u64) -> Option<Firing> {
        let Condition::Missing { for_ms } = rule.condition else {
            return None;
        };
        let last = self.last_ms?;
        if self.fired || now_ms.saturating_sub(last) < for_ms {
            return None;
        }
        self.fired = true;
        Some(Firing {
            at_ms: last.saturating_add(for_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    fn spo2(time_ms: u64, value: i64) -> Reading {
        Reading {
            code: Code::OxygenSaturation,
            time_ms,
            value,
        }
    }

    fn rule(condition: Condition) -> AlertRule {
        AlertRule {
            id: "r".into(),
            code: Code::OxygenSaturation,
            condition,
            escalate_after_ms: None,
        }
    }

    #[test]
    fn a_threshold_fires_once_it_has_held_long_enough_then_not_until_it_clears() {
        let low = rule(Condition::Below {
            limit: 90,
            for_ms: 300_000,
        });
        let mut watch = Watch::default();
        assert_eq!(watch.observe(&low, &spo2(0, 89)), None);
        assert_eq!(watch.observe(&low, &spo2(200_000, 88)), None);
        // A normal reading restarts the count.
        assert_eq!(watch.observe(&low, &spo2(250_000, 95)), None);
        assert_eq!(watch.observe(&low, &spo2(260_000, 87)), None);
        assert_eq!(watch.observe(&low, &spo2(559_999, 87)), None);
        assert_eq!(
            watch.observe(&low, &spo2(560_000, 86)),
            Some(Firing { at_ms: 560_000 })
        );
        assert_eq!(watch.observe(&low, &spo2(600_000, 85)), None, "once");
        assert_eq!(watch.observe(&low, &spo2(610_000, 96)), None);
        assert_eq!(
            watch.observe(&low, &spo2(620_000, 80)),
            None,
            "cleared: counts again from here"
        );
        // Another code is not this rule's business.
        let heart = Reading {
            code: Code::HeartRate,
            time_ms: 999_999,
            value: 40,
        };
        assert_eq!(watch.observe(&low, &heart), None);
        let instant = rule(Condition::Above {
            limit: 98,
            for_ms: 0,
        });
        assert_eq!(
            Watch::default().observe(&instant, &spo2(5, 99)),
            Some(Firing { at_ms: 5 })
        );
    }

    #[test]
    fn a_change_within_its_window_fires() {
        let drop = rule(Condition::Change {
            delta: 5,
            within_ms: 60_000,
        });
        let mut watch = Watch::default();
        assert_eq!(watch.observe(&drop, &spo2(0, 97)), None);
        assert_eq!(watch.observe(&drop, &spo2(30_000, 95)), None);
        assert_eq!(
            watch.observe(&drop, &spo2(50_000, 92)),
            Some(Firing { at_ms: 50_000 })
        );
        assert_eq!(watch.observe(&drop, &spo2(55_000, 91)), None, "once");
        // The 97 left the window; 95 and 92 are within 5 of 91.
        assert_eq!(watch.observe(&drop, &spo2(100_000, 91)), None);
        assert_eq!(watch.observe(&drop, &spo2(110_000, 91)), None);
        assert_eq!(
            watch.observe(&drop, &spo2(120_000, 97)),
            Some(Firing { at_ms: 120_000 })
        );
    }

    #[test]
    fn silence_fires_once_until_a_reading_comes() {
        let missing = rule(Condition::Missing { for_ms: 600_000 });
        let mut watch = Watch::starting_at(1_000);
        assert_eq!(watch.silence(&missing, 500_000), None);
        assert_eq!(
            watch.silence(&missing, 601_000),
            Some(Firing { at_ms: 601_000 })
        );
        assert_eq!(watch.silence(&missing, 900_000), None, "once");
        assert_eq!(watch.observe(&missing, &spo2(950_000, 96)), None);
        assert_eq!(watch.silence(&missing, 1_000_000), None);
        assert_eq!(
            watch.silence(&missing, 1_550_000),
            Some(Firing { at_ms: 1_550_000 })
        );
        // Not a missing-data rule: silence never fires it.
        let low = rule(Condition::Below {
            limit: 90,
            for_ms: 0,
        });
        assert_eq!(Watch::starting_at(0).silence(&low, u64::MAX), None);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::Code;
    use proptest::prelude::*;

    proptest! {
        /// A below-threshold watch fires exactly when a run of consecutive readings below the
        /// limit first spans the rule's duration, and at most once per run: checked against a
        /// direct scan of the readings.
        #[test]
        fn a_threshold_watch_fires_as_a_direct_scan_says(
            steps in proptest::collection::vec((0u64..120_000, 80i64..100), 1..60),
            for_ms in 0u64..300_000,
        ) {
            let rule = AlertRule {
                id: "r".into(),
                code: Code::OxygenSaturation,
                condition: Condition::Below { limit: 90, for_ms },
                escalate_after_ms: None,
            };
            let mut time = 0u64;
            let readings: Vec<Reading> = steps
                .iter()
                .map(|(gap, value)| {
                    time += gap;
                    Reading { code: Code::OxygenSaturation, time_ms: time, value: *value }
                })
                .collect();
            let mut watch = Watch::default();
            let fired: Vec<u64> = readings
                .iter()
                .filter_map(|reading| watch.observe(&rule, reading))
                .map(|firing| firing.at_ms)
                .collect();
            // The oracle: for each run of readings below 90, the first reading at least
            // `for_ms` after the run's start.
            let mut expected = Vec::new();
            let mut run_start: Option<u64> = None;
            let mut done = false;
            for reading in &readings {
                if reading.value < 90 {
                    let start = *run_start.get_or_insert(reading.time_ms);
                    if !done && reading.time_ms - start >= for_ms {
                        expected.push(reading.time_ms);
                        done = true;
                    }
                } else {
                    run_start = None;
                    done = false;
                }
            }
            prop_assert_eq!(fired, expected);
        }
    }
}
