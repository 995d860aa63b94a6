//! Hybrid logical clock: wall-clock milliseconds plus a counter.
//!
//! An event's time is a *claim* by its author. The clock guarantees that an event's time is
//! greater than the time of everything in its causal past, so sorting by time respects causality
//! for honest devices.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How far ahead of an event's own time a cited event may claim to be and still be a clock
/// source (5 minutes). An honest writer's clock therefore never runs more than this ahead of
/// its wall clock because of what others claim.
pub const MAX_CLOCK_LEAD_MILLIS: u64 = 5 * 60 * 1000;

/// Whether a cited event claiming `dep_millis` is exempt from "an event is later than its
/// causal past" for an event claiming `event_millis`: it claims more than
/// [`MAX_CLOCK_LEAD_MILLIS`] beyond it, so it is no clock source. A far-future claim (a
/// clock set to 2200, or `u64::MAX`) can then be cited, and built on, without stopping
/// anyone from writing. The author's own previous event is never exempt.
pub fn exempt(dep_millis: u64, event_millis: u64) -> bool {
    dep_millis > event_millis.saturating_add(MAX_CLOCK_LEAD_MILLIS)
}

/// A hybrid logical timestamp. Ordered by `(millis, counter)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hlc {
    /// Unix time in milliseconds, as claimed by the author.
    pub millis: u64,
    /// Logical counter that breaks ties within one millisecond.
    pub counter: u32,
}

impl Hlc {
    /// The next timestamp after `self`, given the local wall clock `now_millis`.
    pub fn tick(self, now_millis: u64) -> Hlc {
        if now_millis > self.millis {
            Hlc {
                millis: now_millis,
                counter: 0,
            }
        } else {
            Hlc {
                millis: self.millis,
                counter: self.counter.saturating_add(1),
            }
        }
    }

    /// Formats as RFC 3339 UTC with milliseconds, plus the counter when non-zero.
    pub fn to_rfc3339(self) -> String {
        let s = format_unix_millis(self.millis);
        if self.counter == 0 {
            s
        } else {
            format!("{s}+{}", self.counter)
        }
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_rfc3339())
    }
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_unix_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.mmm]][Z]` (UTC) or plain Unix milliseconds.
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let mo: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut millis_of_day = 0u64;
    if let Some(t) = time {
        let (hms, frac) = match t.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        };
        let mut tp = hms.split(':');
        let h: u64 = tp.next()?.parse().ok()?;
        let mi: u64 = tp.next()?.parse().ok()?;
        let sec: u64 = match tp.next() {
            Some(x) => x.parse().ok()?,
            None => 0,
        };
        if tp.next().is_some() || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let ms: u64 = match frac {
            Some(f) if !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit()) => {
                f.parse::<u64>().ok()? * 10u64.pow(3 - f.len() as u32)
            }
            Some(_) => return None,
            None => 0,
        };
        millis_of_day = ((h * 60 + mi) * 60 + sec) * 1000 + ms;
    }
    let days = days_from_civil(y, mo, d);
    if days < 0 {
        return None;
    }
    Some(days as u64 * 86_400_000 + millis_of_day)
}

// Howard Hinnant's civil-date algorithms.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_monotonic_even_when_the_wall_clock_goes_back() {
        let a = Hlc {
            millis: 1000,
            counter: 0,
        };
        let b = a.tick(900);
        assert!(b > a);
        let c = b.tick(2000);
        assert_eq!(
            c,
            Hlc {
                millis: 2000,
                counter: 0
            }
        );
    }

    #[test]
    fn time_round_trip() {
        let ms = 1_763_776_923_456;
        let s = format_unix_millis(ms);
        assert_eq!(s, "2025-11-22T02:02:03.456Z");
        assert_eq!(parse_time(&s), Some(ms));
        assert_eq!(parse_time("2025-11-22"), Some(1_763_769_600_000));
        assert_eq!(parse_time("12345"), Some(12345));
        assert_eq!(parse_time("2025-13-01"), None);
        assert_eq!(parse_time("yesterday"), None);
    }
}
