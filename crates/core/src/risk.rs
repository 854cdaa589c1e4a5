//! Session risk: points that matching rules add, decayed exponentially by a
//! half-life, and thresholds that escalate the response.
//!
//! ## Determinism
//!
//! The score is kept as an integer number of milli-points and decay uses
//! integer arithmetic only (whole half-lives are shifts; the fraction of a
//! half-life uses a 64-entry Q32 table of `2^(-k/64)`, interpolated
//! linearly). The native collector and the wasm extension therefore compute
//! bit-identical scores from the same inputs — `f64::powf` would not
//! guarantee that across platforms.
//!
//! ## Thresholds
//!
//! After an event, the new score is compared with the thresholds:
//! - [`RiskStep::reached`] is the highest threshold at or below the new score
//!   (where the session stands);
//! - [`RiskStep::fired`] is the highest threshold *crossed upward by this
//!   event*: `decayed score before < at <= score after`. Only a fired
//!   threshold adds its response to the event's decision. A session that
//!   sits above `step_up` does not ask for step-up again on every routine
//!   event; it asks again only after decaying below the threshold and
//!   climbing back over it.
//!
//! Scores compare in milli-points; the reported score is `floor(milli /
//! 1000)`, so "reported score >= at" and "milli >= at * 1000" agree.

use serde::{Deserialize, Serialize};

use crate::event::Response;

/// A session threshold: at `at` accumulated points, respond with `response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub at: u32,
    pub response: Response,
}

/// How a session's risk decays and escalates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskPolicy {
    /// Half-life in minutes; 0 means no decay.
    pub half_life_minutes: u32,
    /// Sorted by `at`, ascending, no two with the same `at`.
    pub thresholds: Vec<Threshold>,
}

impl Default for RiskPolicy {
    fn default() -> Self {
        RiskPolicy {
            half_life_minutes: 30,
            thresholds: Vec::new(),
        }
    }
}

impl RiskPolicy {
    pub fn half_life_ms(&self) -> u64 {
        u64::from(self.half_life_minutes) * 60_000
    }
}

/// The persisted state of one session's risk. The service worker stores it
/// (it may be evicted at any time) and passes it back for the next event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRisk {
    /// Accumulated score in milli-points, as of `updated_ms`.
    pub milli: u64,
    /// When `milli` was last brought up to date (ms since the Unix epoch).
    pub updated_ms: i64,
}

/// What one event did to the session's risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskStep {
    /// Score before the event, after decay to the event's time.
    pub before: u32,
    /// Score after the event's points were added.
    pub after: u32,
    pub added: u32,
    /// Highest threshold at or below `after`.
    pub reached: Option<Threshold>,
    /// Highest threshold crossed upward by this event (see module docs).
    pub fired: Option<Threshold>,
}

/// `round(2^32 * 2^(-k/64))` for k = 0..=64.
const FRAC_Q32: [u64; 65] = [
    4294967296, 4248701965, 4202935003, 4157661043, 4112874773, 4068570940, 4024744348, 3981389855,
    3938502376, 3896076880, 3854108391, 3812591987, 3771522796, 3730896002, 3690706840, 3650950594,
    3611622603, 3572718252, 3534232978, 3496162267, 3458501653, 3421246719, 3384393094, 3347936457,
    3311872529, 3276197082, 3240905930, 3205994934, 3171459999, 3137297074, 3103502151, 3070071267,
    3037000500, 3004285971, 2971923842, 2939910317, 2908241642, 2876914102, 2845924021, 2815267765,
    2784941738, 2754942382, 2725266179, 2695909648, 2666869345, 2638141863, 2609723834, 2581611923,
    2553802834, 2526293303, 2499080105, 2472160047, 2445529972, 2419186755, 2393127307, 2367348571,
    2341847524, 2316621173, 2291666561, 2266980759, 2242560872, 2218404036, 2194507417, 2170868212,
    2147483648,
];

/// `milli * 2^(-elapsed/half_life)`, in integers.
pub fn decay(milli: u64, elapsed_ms: u64, half_life_ms: u64) -> u64 {
    if half_life_ms == 0 || elapsed_ms == 0 || milli == 0 {
        return milli;
    }
    let halvings = elapsed_ms / half_life_ms;
    if halvings >= 64 {
        return 0;
    }
    let shifted = milli >> halvings;
    // Remaining fraction of a half-life, in 1/2^16 units.
    let rem = elapsed_ms % half_life_ms;
    let frac16 = ((u128::from(rem) << 16) / u128::from(half_life_ms)) as u64; // < 65536
    let k = (frac16 >> 10) as usize; // 0..63
    let t = frac16 & 0x3ff; // position between k and k+1, in 1/1024
    let (a, b) = (FRAC_Q32[k], FRAC_Q32[k + 1]);
    let factor = a - (((a - b) * t) >> 10);
    ((u128::from(shifted) * u128::from(factor)) >> 32) as u64
}

fn points(milli: u64) -> u32 {
    u32::try_from(milli / 1000).unwrap_or(u32::MAX)
}

impl SessionRisk {
    /// The score decayed to `now_ms` (no change when the clock went back).
    pub fn decayed_milli(&self, now_ms: i64, policy: &RiskPolicy) -> u64 {
        let elapsed = u64::try_from(now_ms.saturating_sub(self.updated_ms)).unwrap_or(0);
        decay(self.milli, elapsed, policy.half_life_ms())
    }

    /// The score in whole points as of `now_ms`.
    pub fn score(&self, now_ms: i64, policy: &RiskPolicy) -> u32 {
        points(self.decayed_milli(now_ms, policy))
    }

    /// Decays to `now_ms`, adds `added` points and evaluates the thresholds.
    /// A clock that went backwards neither decays nor moves `updated_ms`
    /// back.
    pub fn apply(&mut self, policy: &RiskPolicy, now_ms: i64, added: u32) -> RiskStep {
        let before_milli = self.decayed_milli(now_ms, policy);
        let after_milli = before_milli.saturating_add(u64::from(added) * 1000);
        self.milli = after_milli;
        self.updated_ms = self.updated_ms.max(now_ms);
        let mut reached = None;
        let mut fired = None;
        for th in &policy.thresholds {
            let at = u64::from(th.at) * 1000;
            if at <= after_milli {
                reached = Some(*th);
                if before_milli < at {
                    fired = Some(*th);
                }
            }
        }
        RiskStep {
            before: points(before_milli),
            after: points(after_milli),
            added,
            reached,
            fired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn policy() -> RiskPolicy {
        RiskPolicy {
            half_life_minutes: 30,
            thresholds: vec![
                Threshold {
                    at: 60,
                    response: Response::StepUp,
                },
                Threshold {
                    at: 100,
                    response: Response::Terminate,
                },
            ],
        }
    }

    #[test]
    fn table_is_two_to_the_minus_k_over_64() {
        for (k, v) in FRAC_Q32.iter().enumerate() {
            let exact = (2f64.powf(-(k as f64) / 64.0) * 4294967296.0).round();
            assert!((exact - *v as f64).abs() <= 1.0, "k={k}: {v} vs {exact}");
        }
    }

    #[test]
    fn decay_halves_per_half_life() {
        let hl = 30 * 60_000;
        assert_eq!(decay(80_000, 0, hl), 80_000);
        assert_eq!(decay(80_000, hl, hl), 40_000);
        assert_eq!(decay(80_000, 2 * hl, hl), 20_000);
        // Half a half-life: 80000 / sqrt(2) = 56568.54
        assert_eq!(decay(80_000, hl / 2, hl), 56_568);
        assert_eq!(decay(80_000, 64 * hl, hl), 0);
        assert_eq!(decay(80_000, 12345, 0), 80_000);
        // Monotone in elapsed time.
        let mut last = u64::MAX;
        for e in (0..hl * 3).step_by(7_919) {
            let d = decay(1_000_000, e, hl);
            assert!(d <= last);
            last = d;
        }
    }

    #[test]
    fn thresholds_fire_only_when_crossed_upward() {
        let p = policy();
        let mut r = SessionRisk::default();
        let s = r.apply(&p, 0, 40);
        assert_eq!((s.before, s.after, s.reached, s.fired), (0, 40, None, None));
        let s = r.apply(&p, 0, 30);
        assert_eq!((s.before, s.after), (40, 70));
        assert_eq!(s.fired, Some(p.thresholds[0]));
        assert_eq!(s.reached, Some(p.thresholds[0]));
        // Still above 60: reached, not fired again.
        let s = r.apply(&p, 0, 5);
        assert_eq!(s.after, 75);
        assert_eq!(s.reached, Some(p.thresholds[0]));
        assert_eq!(s.fired, None);
        // One half-life later: 37 (37.5 floored), then +25 crosses 60 again.
        let s = r.apply(&p, 30 * MIN, 25);
        assert_eq!((s.before, s.after), (37, 62));
        assert_eq!(s.fired, Some(p.thresholds[0]));
        // A jump over both thresholds fires the higher one.
        let mut r = SessionRisk::default();
        let s = r.apply(&p, 5, 120);
        assert_eq!(s.fired, Some(p.thresholds[1]));
        assert_eq!(r.updated_ms, 5);
        assert_eq!(r.milli, 120_000);
    }

    #[test]
    fn clock_going_back_does_not_decay_or_rewind() {
        let p = policy();
        let mut r = SessionRisk {
            milli: 50_000,
            updated_ms: 10 * MIN,
        };
        let s = r.apply(&p, 0, 10);
        assert_eq!((s.before, s.after), (50, 60));
        assert_eq!(r.updated_ms, 10 * MIN);
        assert_eq!(r.score(40 * MIN, &p), 30);
    }

    #[test]
    fn serde_round_trip() {
        let r = SessionRisk {
            milli: 1234,
            updated_ms: 99,
        };
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, r#"{"milli":1234,"updated_ms":99}"#);
        assert_eq!(serde_json::from_str::<SessionRisk>(&j).unwrap(), r);
    }
}
