//! Ground truth of the sandbox: pure, deterministic functions that say how many events a
//! series had in any UTC hour.
//!
//! Every number the simulated upstreams serve is derived from these functions (never stored),
//! so every provider view, granularity and page of the same series is consistent, and tests
//! can compute the exact expected answer without HTTP. A series is named by a string key
//! that always starts with `{provider}/{account}/...`.
//!
//! The shape is "realistic enough" for dashboards: a daily rhythm (busy 10-16 UTC, quiet at
//! night), a weekly rhythm (weekends at ~40%), a per-series level and per-hour noise. Hours
//! starting at or after the current hour are 0: the simulated upstreams have no data from the
//! future, which is what makes the gateway's "live" (still changing) chunks real.
//!
//! Performance matters: tests in debug builds sum a few hundred thousand hours, so the inner
//! loop works on integer hour indexes and hashes each key once.

use chrono::{DateTime, Utc};

const SECONDS_PER_HOUR: i64 = 3600;
/// 2^64 / golden ratio, the splitmix64 increment.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Relative activity per UTC hour of day: peak around 10-16 UTC, quiet at night.
const DAILY: [f64; 24] = [
    0.08, 0.05, 0.04, 0.04, 0.05, 0.08, 0.15, 0.30, 0.50, 0.75, 0.95, 1.00, //
    1.00, 1.00, 1.00, 0.95, 0.90, 0.75, 0.60, 0.45, 0.35, 0.25, 0.18, 0.12,
];
/// Relative activity on Saturdays and Sundays.
const WEEKEND: f64 = 0.4;

/// FNV-1a (64-bit) of a string: a stable hash (unlike `std`'s `DefaultHasher`, which may
/// change between Rust releases and would silently change every expected value).
fn fnv1a(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The splitmix64 finaliser: turns a weakly mixed 64-bit value into a well mixed one.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform value in [0, 1) from the top 53 bits of a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn mix_hashed(key_hash: u64, n: i64) -> u64 {
    // `as u64` reinterprets negative n bit for bit, which is what a hash wants.
    splitmix(key_hash ^ splitmix(n as u64))
}

/// splitmix64-style mixing of a string key and an integer (FNV-1a over the key, then
/// splitmix): the one source of deterministic "randomness" in the sandbox.
pub fn mix(key: &str, n: i64) -> u64 {
    mix_hashed(fnv1a(key), n)
}

/// Index of the UTC hour containing `t` (hours since the Unix epoch, floored).
fn hour_index(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(SECONDS_PER_HOUR)
}

/// Index of the first UTC hour starting at or after `t`.
fn hour_index_ceil(t: DateTime<Utc>) -> i64 {
    let floor = hour_index(t);
    if floor * SECONDS_PER_HOUR == t.timestamp() && t.timestamp_subsec_nanos() == 0 {
        floor
    } else {
        floor + 1
    }
}

/// The start of the UTC hour containing `t`.
pub fn hour_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(hour_index(t) * SECONDS_PER_HOUR, 0)
        .expect("the start of the hour of a valid instant is a valid instant")
}

/// The start of the current UTC hour: the first hour with no data yet.
pub fn current_hour() -> DateTime<Utc> {
    hour_floor(Utc::now())
}

/// The starts of the UTC hours that start in [from, to), in order (from/to need not be
/// aligned). Handy for per-hour work such as weighted averages or distinct counts.
pub fn hour_starts(from: DateTime<Utc>, to: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> {
    let first = hour_index_ceil(from);
    let end = hour_index_ceil(to);
    (first..end).filter_map(|i| DateTime::from_timestamp(i * SECONDS_PER_HOUR, 0))
}

/// Per-series activity level in [0.75, 1.25), so that series of the same kind differ.
fn level(key_hash: u64) -> f64 {
    0.75 + 0.5 * unit(splitmix(key_hash))
}

/// The count of one hour, given the key's hash and level (hoisted out of loops).
fn count_at(key_hash: u64, level: f64, index: i64, scale: u32) -> u64 {
    let day = index.div_euclid(24);
    let hour_of_day = index.rem_euclid(24) as usize;
    // 1970-01-01 was a Thursday: with Monday = 0, Saturday = 5 and Sunday = 6.
    let weekday = (day + 3).rem_euclid(7);
    let weekly = if weekday >= 5 { WEEKEND } else { 1.0 };
    let r = mix_hashed(key_hash, index);
    let noise = 0.6 + 0.8 * unit(r);
    let expected = f64::from(scale) * level * DAILY[hour_of_day] * weekly * noise;
    // Stochastic rounding with a second deterministic draw: keeps the long-run mean equal
    // to `expected`, so small scales (1, 2) still produce a plausible mix of 0s and 1s.
    (expected + unit(splitmix(r))).floor() as u64
}

/// Events of `series` in the UTC hour starting at `hour` (must be hour-aligned; else floor it).
/// Daily rhythm (peak around 10-16 UTC, quiet at night), weekly rhythm (Sat/Sun ~40%),
/// deterministic noise; typical busy-hour value ≈ `scale`. 0 for hours starting at or after the
/// current hour (no data from the future: that makes "live" chunks real).
pub fn hourly_count(series: &str, hour: DateTime<Utc>, scale: u32) -> u64 {
    let index = hour_index(hour);
    if index >= hour_index(Utc::now()) {
        return 0;
    }
    let key_hash = fnv1a(series);
    count_at(key_hash, level(key_hash), index, scale)
}

/// Sum of hourly_count over the hours in [from, to) (from/to hour-aligned; an hour is counted
/// if it starts in range). 0 when to <= from.
pub fn sum_hours(series: &str, from: DateTime<Utc>, to: DateTime<Utc>, scale: u32) -> u64 {
    let first = hour_index_ceil(from);
    // Hours from the current one on are 0: stop there instead of summing zeros.
    let end = hour_index_ceil(to).min(hour_index(Utc::now()));
    if end <= first {
        return 0;
    }
    let key_hash = fnv1a(series);
    let level = level(key_hash);
    (first..end)
        .map(|i| count_at(key_hash, level, i, scale))
        .sum()
}

/// A deterministic value in [lo, hi) for a key and instant (for averages, percentages),
/// rounded down to 1 decimal (down, so that it stays below `hi`).
pub fn value_in(key: &str, at: DateTime<Utc>, lo: f64, hi: f64) -> f64 {
    let x = lo + (hi - lo) * unit(mix(key, at.timestamp()));
    let rounded = (x * 10.0).floor() / 10.0;
    // Rounding down can fall below a `lo` with more than one decimal; keep the promise.
    rounded.max(lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid test date")
    }

    #[test]
    fn mix_is_deterministic_and_depends_on_key_and_number() {
        assert_eq!(mix("a/b", 7), mix("a/b", 7));
        assert_ne!(mix("a/b", 7), mix("a/b", 8));
        assert_ne!(mix("a/b", 7), mix("a/c", 7));
        assert_ne!(mix("a/b", -1), mix("a/b", 1));
    }

    #[test]
    fn an_unaligned_hour_counts_as_the_hour_it_falls_in() {
        let h = utc(2024, 3, 5, 13);
        assert_eq!(
            hourly_count("t/acme/x", h + Duration::minutes(42), 10),
            hourly_count("t/acme/x", h, 10)
        );
    }

    #[test]
    fn the_current_hour_and_the_future_have_no_data() {
        let now = current_hour();
        let at_now = hourly_count("t/acme/x", now, 1000);
        // If the hour rolled over between the two reads, `now` became the past: skip that check.
        if current_hour() == now {
            assert_eq!(at_now, 0);
        }
        for k in 1..48 {
            assert_eq!(hourly_count("t/acme/x", now + Duration::hours(k), 1000), 0);
        }
        let next = now + Duration::hours(1);
        assert_eq!(
            sum_hours("t/acme/x", next, next + Duration::days(30), 1000),
            0
        );
        assert!(hourly_count("t/acme/x", now - Duration::hours(24 * 7), 1000) > 0);
    }

    #[test]
    fn busy_hours_are_near_scale_and_nights_and_weekends_are_quieter() {
        // Four weeks of weekdays vs weekend days, and noon vs 3 am.
        let start = utc(2024, 1, 1, 0); // a Monday
        let (mut noon, mut night, mut weekday, mut weekend) = (0u64, 0u64, 0u64, 0u64);
        for d in 0..28 {
            let day = start + Duration::days(d);
            noon += hourly_count("t/acme/x", day + Duration::hours(12), 100);
            night += hourly_count("t/acme/x", day + Duration::hours(3), 100);
            let total = sum_hours("t/acme/x", day, day + Duration::days(1), 100);
            if d % 7 >= 5 {
                weekend += total;
            } else {
                weekday += total;
            }
        }
        let noon_mean = noon as f64 / 28.0 / (5.0 * 1.0 + 2.0 * WEEKEND) * 7.0;
        assert!((50.0..150.0).contains(&noon_mean), "noon mean {noon_mean}");
        assert!(night * 5 < noon, "night {night} vs noon {noon}");
        let weekday_mean = weekday as f64 / 20.0;
        let weekend_mean = weekend as f64 / 8.0;
        let ratio = weekend_mean / weekday_mean;
        assert!((0.3..0.5).contains(&ratio), "weekend ratio {ratio}");
    }

    #[test]
    fn sum_hours_equals_the_sum_of_hourly_counts_and_splits_additively() {
        let from = utc(2024, 2, 27, 5);
        let mid = utc(2024, 3, 2, 17);
        let to = utc(2024, 3, 9, 0);
        let by_hand: u64 = hour_starts(from, to)
            .map(|h| hourly_count("t/acme/y", h, 7))
            .sum();
        assert!(by_hand > 0);
        assert_eq!(sum_hours("t/acme/y", from, to, 7), by_hand);
        assert_eq!(
            sum_hours("t/acme/y", from, mid, 7) + sum_hours("t/acme/y", mid, to, 7),
            by_hand
        );
        assert_eq!(sum_hours("t/acme/y", to, from, 7), 0);
    }

    #[test]
    fn sum_hours_counts_only_hours_that_start_inside_the_range() {
        let h = utc(2024, 5, 6, 11);
        let one = hourly_count("t/acme/z", h, 50);
        assert_eq!(sum_hours("t/acme/z", h, h + Duration::minutes(1), 50), one);
        assert_eq!(
            sum_hours(
                "t/acme/z",
                h + Duration::seconds(1),
                h + Duration::hours(1),
                50
            ),
            0
        );
    }

    #[test]
    fn different_accounts_get_different_series() {
        let from = utc(2024, 1, 1, 0);
        let to = utc(2024, 2, 1, 0);
        assert_ne!(
            sum_hours("t/acme/x", from, to, 10),
            sum_hours("t/globex/x", from, to, 10)
        );
    }

    #[test]
    fn value_in_stays_in_range_with_one_decimal() {
        let at = utc(2024, 1, 1, 0);
        for k in 0..2000 {
            let v = value_in("t/acme/v", at + Duration::hours(k), 5.0, 60.0);
            assert!((5.0..60.0).contains(&v), "{v}");
            assert!(((v * 10.0).round() - v * 10.0).abs() < 1e-9, "{v}");
        }
    }

    #[test]
    fn hour_starts_lists_hours_starting_in_the_range() {
        let h = utc(2024, 1, 1, 10);
        let hours: Vec<_> =
            hour_starts(h - Duration::minutes(30), h + Duration::hours(2)).collect();
        assert_eq!(hours, vec![h, h + Duration::hours(1)]);
    }
}
