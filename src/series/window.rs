//! Windows: a requested `[from, to)` aligned outward to buckets and cut into them.
//!
//! [`Window::new`] is the one place where user-supplied ranges are checked (empty, out of
//! range, too many buckets) before anything is allocated, so a hostile query such as three
//! centuries by HOUR costs a few arithmetic operations, not millions of bucket starts.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, TimeDelta, Timelike, Utc};

use crate::series::granularity::Granularity;
use crate::series::zone::Zone;

/// The most buckets one series may have (SPEC §3).
pub const MAX_BUCKETS: usize = 10_000;

/// Slack between the cheap calendar estimate of the bucket count and the exact count.
///
/// The estimate counts calendar periods between local dates; the exact count can only be
/// lower (a calendar day that a zone skipped entirely is no bucket). Windows whose estimate
/// is within this slack of the limit are counted exactly by stepping, which stays cheap.
const ESTIMATE_SLACK: usize = 64;

/// One hour of real time, the length of every HOUR bucket.
const HOUR: TimeDelta = TimeDelta::hours(1);

/// Why a window cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    /// from >= to
    #[error("window.from ({from}) must be before window.to ({to})")]
    Empty {
        /// The requested start.
        from: DateTime<Utc>,
        /// The requested end.
        to: DateTime<Utc>,
    },
    /// More than [`MAX_BUCKETS`] buckets after alignment.
    #[error("window has {count} {granularity} buckets; at most {max} are allowed in one series: use a coarser granularity or a shorter window")]
    TooManyBuckets {
        /// How many buckets the aligned window would have.
        count: usize,
        /// [`MAX_BUCKETS`].
        max: usize,
        /// The granularity's GraphQL name.
        granularity: &'static str,
    },
    /// instants outside what chrono can represent after alignment, etc.
    #[error("window is out of the supported range (years 1900-2200)")]
    OutOfRange,
}

/// A window aligned outward to bucket boundaries: [from, to) in `zone`, cut into `granularity`
/// buckets. Immutable; holds its bucket starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Bucket starts, strictly increasing; `starts[0]` is the aligned `from`. Kept because
    /// calendar buckets have uneven lengths, so locating an instant is a binary search here
    /// rather than a division.
    /// Shared: windows are handed out by the memo, and cloned per series.
    starts: Arc<Starts>,
    /// The aligned end: the start of the bucket after the last one.
    to: DateTime<Utc>,
    granularity: Granularity,
    zone: Zone,
}

/// A window's bucket starts and, once asked for, their texts.
#[derive(Debug)]
struct Starts {
    at: Box<[DateTime<Utc>]>,
    /// `at` in RFC 3339 ([`rfc3339`]), written once per window: every series over the window
    /// answers its points' `at` with them.
    texts: OnceLock<Box<[Box<str>]>>,
    /// [`Window::key_text`], written once per window.
    key: OnceLock<Box<str>>,
}

impl Starts {
    fn new(at: Vec<DateTime<Utc>>) -> Arc<Self> {
        Arc::new(Self {
            at: at.into(),
            texts: OnceLock::new(),
            key: OnceLock::new(),
        })
    }
}

impl PartialEq for Starts {
    /// The texts follow from the instants.
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

/// `t` as `to_rfc3339_opts(SecondsFormat::AutoSi, true)` does (`2025-03-09T13:00:00Z`),
/// written directly for whole seconds of years 0 to 9999 (every bucket start): chrono's
/// general formatter was a visible share of a dashboard's CPU.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    let year = t.year();
    if t.nanosecond() != 0 || !(0..=9999).contains(&year) {
        return t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    }
    fn two(text: &mut String, n: u32) {
        text.push(char::from(b'0' + (n / 10) as u8));
        text.push(char::from(b'0' + (n % 10) as u8));
    }
    let mut text = String::with_capacity(20);
    let year = year as u32;
    for (n, after) in [
        (year / 100, None),
        (year % 100, Some('-')),
        (t.month(), Some('-')),
        (t.day(), Some('T')),
        (t.hour(), Some(':')),
        (t.minute(), Some(':')),
        (t.second(), Some('Z')),
    ] {
        two(&mut text, n);
        text.extend(after);
    }
    text
}

/// Bytes of bucket starts the window memo holds (a month of DAY buckets is ~250 bytes).
const MEMO_BYTES: u64 = 4 * 1024 * 1024;

/// Which window of [`Window::new`]'s arguments a memo entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Held {
    /// The window itself.
    Itself,
    /// Its [`Window::previous`].
    Previous,
}

/// [`Window::new`]'s arguments, and which window of them.
type MemoKey = (DateTime<Utc>, DateTime<Utc>, Granularity, Zone, Held);

/// Memo keys and their windows.
type WindowMemo = moka::sync::Cache<MemoKey, Window, foldhash::fast::RandomState>;

/// How many windows each thread keeps at hand in front of the shared memo.
const RECENT: usize = 4;

/// The windows a thread looked up last, and the slot the next one replaces.
type Recent = ([Option<(MemoKey, Window)>; RECENT], usize);

thread_local! {
    /// This thread's recent windows: a dashboard asks for the same one or two windows dozens
    /// of times per request, and a comparison here is cheaper than a lookup in the shared memo.
    static RECENT_WINDOWS: std::cell::RefCell<Recent> =
        const { std::cell::RefCell::new(([None, None, None, None], 0)) };
}

/// The window of `key`: from this thread's recent windows, else from the shared memo, else
/// `build`'s (kept in both; an error is not kept).
fn memoized(
    key: MemoKey,
    build: impl FnOnce() -> Result<Window, WindowError>,
) -> Result<Window, WindowError> {
    let recent = RECENT_WINDOWS.with_borrow(|(windows, _)| {
        windows
            .iter()
            .flatten()
            .find(|(held, _)| *held == key)
            .map(|(_, window)| window.clone())
    });
    if let Some(window) = recent {
        return Ok(window);
    }
    let window = match memo().get(&key) {
        Some(window) => window,
        None => {
            let window = build()?;
            memo().insert(key, window.clone());
            window
        }
    };
    RECENT_WINDOWS.with_borrow_mut(|(windows, next)| {
        windows[*next] = Some((key, window.clone()));
        *next = (*next + 1) % RECENT;
    });
    Ok(window)
}

/// Windows built so far, by request. Building a calendar window asks the zone database for
/// every bucket boundary, and a dashboard asks for the same few windows again and again (each
/// series field, its previous window, the query-cost estimate): about a tenth of a warm
/// query's CPU before this memo. Finding the previous window steps back bucket by bucket
/// through the zone database too, so it is kept beside its window. A window is a pure
/// function of its four inputs, so sharing it across requests and tenants is safe.
fn memo() -> &'static WindowMemo {
    static MEMO: std::sync::OnceLock<WindowMemo> = std::sync::OnceLock::new();
    MEMO.get_or_init(|| {
        moka::sync::Cache::builder()
            .max_capacity(MEMO_BYTES)
            .weigher(|_, window: &Window| {
                // The instants, and the texts that `start_texts` may add.
                let bytes = (window.len() + 8) * std::mem::size_of::<DateTime<Utc>>()
                    + window.len() * (20 + std::mem::size_of::<Box<str>>());
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build_with_hasher(foldhash::fast::RandomState::default())
    })
}

impl Window {
    /// Aligns outward: from = floor(from); to = to if already a boundary, else the next boundary.
    /// Counts buckets WITHOUT allocating first (refuse > MAX_BUCKETS cheaply: a window of
    /// 1900..2200 by HOUR must be refused fast, not after building 2.6M buckets).
    /// Restrict instants to years 1900..=2200 (OutOfRange otherwise) so nothing overflows.
    ///
    /// The supported range is 1900-01-01T00:00Z to 2201-01-01T00:00Z, both included, for the
    /// requested instants; alignment may move `from` into 1899 in a zone east of UTC.
    ///
    /// HOUR windows are a grid of real hours from the aligned `from`; `to` is "already a
    /// boundary" when it is a whole number of hours after it.
    pub fn new(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
        zone: Zone,
    ) -> Result<Window, WindowError> {
        memoized((from, to, granularity, zone, Held::Itself), || {
            Self::build(from, to, granularity, zone)
        })
    }

    /// [`Window::new`] without the memo.
    fn build(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
        zone: Zone,
    ) -> Result<Window, WindowError> {
        if from >= to {
            return Err(WindowError::Empty { from, to });
        }
        let (min, max) = supported_range();
        if from < min || to > max {
            return Err(WindowError::OutOfRange);
        }
        let start = granularity.floor(from, zone);
        let too_many = |count| WindowError::TooManyBuckets {
            count,
            max: MAX_BUCKETS,
            granularity: granularity.name(),
        };

        if granularity == Granularity::Hour {
            // Real hours: the count is a division, and the grid needs no calendar.
            // Whole seconds plus a remainder: 300 years in nanoseconds would overflow an i64.
            let span = to - start;
            let seconds = span.num_seconds();
            let hours = seconds / 3600 + i64::from(seconds % 3600 != 0 || span.subsec_nanos() != 0);
            let count = usize::try_from(hours).map_err(|_| WindowError::OutOfRange)?;
            if count > MAX_BUCKETS {
                return Err(too_many(count));
            }
            let mut starts = Vec::with_capacity(count);
            let mut end = start;
            for _ in 0..count {
                starts.push(end);
                end += HOUR;
            }
            return Ok(Window {
                starts: Starts::new(starts),
                to: end,
                granularity,
                zone,
            });
        }

        let to_floor = granularity.floor(to, zone);
        let end = if to_floor == to {
            to
        } else {
            granularity.next(to_floor, zone)
        };
        let estimate = calendar_periods(granularity, zone, start, end);
        if estimate > MAX_BUCKETS + ESTIMATE_SLACK {
            return Err(too_many(estimate));
        }
        let mut starts = Vec::with_capacity(estimate.min(MAX_BUCKETS + 1));
        let mut cursor = start;
        while cursor < end {
            starts.push(cursor);
            // The estimate is an upper bound, so this never triggers on real tz data; it
            // keeps the loop finite whatever the data says.
            if starts.len() > MAX_BUCKETS + ESTIMATE_SLACK {
                return Err(too_many(starts.len()));
            }
            cursor = granularity.next(cursor, zone);
        }
        if starts.len() > MAX_BUCKETS {
            return Err(too_many(starts.len()));
        }
        Ok(Window {
            starts: Starts::new(starts),
            to: cursor,
            granularity,
            zone,
        })
    }

    /// The aligned start: the start of the first bucket.
    pub fn from(&self) -> DateTime<Utc> {
        // `new` never builds a window without buckets.
        self.starts.at[0]
    }

    /// The aligned end (exclusive): the end of the last bucket.
    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }

    /// The bucket size.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The zone whose calendar the buckets follow.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// Bucket count (>= 1).
    pub fn len(&self) -> usize {
        self.starts.at.len()
    }

    /// Always false (a window has at least one bucket); for clippy.
    pub fn is_empty(&self) -> bool {
        self.starts.at.is_empty()
    }

    /// (start, end) of bucket i.
    ///
    /// # Panics
    /// When `i >= self.len()`, like slice indexing.
    pub fn bucket(&self, i: usize) -> (DateTime<Utc>, DateTime<Utc>) {
        let end = self.starts.at.get(i + 1).copied().unwrap_or(self.to);
        (self.starts.at[i], end)
    }

    /// The start of every bucket, in order.
    pub fn bucket_starts(&self) -> &[DateTime<Utc>] {
        &self.starts.at
    }

    /// The start of every bucket in RFC 3339 ([`rfc3339`]), in order: written on first use
    /// and shared by every series over this window.
    pub fn start_texts(&self) -> &[Box<str>] {
        self.starts
            .texts
            .get_or_init(|| self.starts.at.iter().map(|&t| rfc3339(t).into()).collect())
    }

    /// Text unique to this window, for cache keys: its ends as integer microseconds, the
    /// granularity and the zone. Written on first use and shared, as the window is.
    pub fn key_text(&self) -> &str {
        self.starts.key.get_or_init(|| {
            format!(
                "{} {} {} {}",
                self.from().timestamp_micros(),
                self.to.timestamp_micros(),
                self.granularity.name(),
                self.zone
            )
            .into()
        })
    }

    /// Index of the bucket containing `t`, or None outside [from, to). Binary search.
    pub fn bucket_index(&self, t: DateTime<Utc>) -> Option<usize> {
        if t < self.from() || t >= self.to {
            return None;
        }
        // t >= starts[0], so at least one start is <= t.
        Some(self.starts.at.partition_point(|start| *start <= t) - 1)
    }

    /// The window of the same bucket count and granularity immediately before this one
    /// (ends at self.from()).
    pub fn previous(&self) -> Result<Window, WindowError> {
        let key = (
            self.from(),
            self.to,
            self.granularity,
            self.zone,
            Held::Previous,
        );
        memoized(key, || self.step_back())
    }

    /// [`Window::previous`] without the memo.
    fn step_back(&self) -> Result<Window, WindowError> {
        let (min, _) = supported_range();
        let mut from = self.from();
        for _ in 0..self.len() {
            from = self.granularity.prev(from, self.zone);
            // Stop stepping as soon as the window cannot be valid anyway.
            if from < min {
                return Err(WindowError::OutOfRange);
            }
        }
        Window::new(from, self.from(), self.granularity, self.zone)
    }
}

/// The instants a window may be requested for: 1900-01-01T00:00Z ..= 2201-01-01T00:00Z.
fn supported_range() -> (DateTime<Utc>, DateTime<Utc>) {
    let at = |year| {
        NaiveDate::from_ymd_opt(year, 1, 1)
            .expect("January 1st exists in every year")
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists on a naive date")
            .and_utc()
    };
    (at(1900), at(2201))
}

/// How many calendar periods lie between two aligned boundaries, from their local dates:
/// an upper bound on the bucket count, computed without stepping.
fn calendar_periods(
    granularity: Granularity,
    zone: Zone,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> usize {
    let first = granularity.period_start(zone.local(start).date());
    let last = granularity.period_start(zone.local(end).date());
    let months = |d: NaiveDate| i64::from(d.year()) * 12 + i64::from(d.month0());
    let count = match granularity {
        Granularity::Hour | Granularity::Day => (last - first).num_days(),
        Granularity::Week => (last - first).num_days() / 7,
        Granularity::Month => months(last) - months(first),
        Granularity::Year => i64::from(last.year() - first.year()),
    };
    usize::try_from(count).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("test instant parses")
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(name).expect("test zone parses")
    }

    fn window(from: &str, to: &str, g: Granularity, z: &str) -> Window {
        Window::new(utc(from), utc(to), g, zone(z)).expect("test window is valid")
    }

    #[test]
    fn an_hour_window_across_madrids_dst_forward_day_has_23_buckets() {
        let w = window(
            "2024-03-30T23:00:00Z",
            "2024-03-31T22:00:00Z",
            Granularity::Hour,
            "Europe/Madrid",
        );
        assert_eq!(w.len(), 23);
        let day = window(
            "2024-03-30T23:00:00Z",
            "2024-03-31T22:00:00Z",
            Granularity::Day,
            "Europe/Madrid",
        );
        assert_eq!(day.len(), 1);
        assert_eq!(day.to(), utc("2024-03-31T22:00:00Z"));
    }

    #[test]
    fn an_hour_window_across_madrids_dst_back_day_has_25_buckets() {
        let w = window(
            "2024-10-26T22:00:00Z",
            "2024-10-27T23:00:00Z",
            Granularity::Hour,
            "Europe/Madrid",
        );
        assert_eq!(w.len(), 25);
    }

    #[test]
    fn hour_windows_across_sydneys_dst_days_have_23_and_25_buckets() {
        // 2024-10-06 (forward) starts at 14:00Z on the 5th (AEST) and ends at 13:00Z (AEDT).
        let forward = window(
            "2024-10-05T14:00:00Z",
            "2024-10-06T13:00:00Z",
            Granularity::Hour,
            "Australia/Sydney",
        );
        assert_eq!(forward.len(), 23);
        // 2024-04-07 (back) starts at 13:00Z on the 6th (AEDT) and ends at 14:00Z (AEST).
        let back = window(
            "2024-04-06T13:00:00Z",
            "2024-04-07T14:00:00Z",
            Granularity::Hour,
            "Australia/Sydney",
        );
        assert_eq!(back.len(), 25);
        let day = window(
            "2024-04-06T20:00:00Z",
            "2024-04-07T02:00:00Z",
            Granularity::Day,
            "Australia/Sydney",
        );
        assert_eq!(
            day.bucket(0),
            (utc("2024-04-06T13:00:00Z"), utc("2024-04-07T14:00:00Z"))
        );
    }

    #[test]
    fn a_window_not_on_bucket_boundaries_is_widened_outward_at_both_ends() {
        let w = window(
            "2024-05-10T07:30:00Z",
            "2024-05-12T01:00:00Z",
            Granularity::Day,
            "UTC",
        );
        assert_eq!(w.from(), utc("2024-05-10T00:00:00Z"));
        assert_eq!(w.to(), utc("2024-05-13T00:00:00Z"));
        assert_eq!(w.len(), 3);
        let hours = window(
            "2024-05-10T07:30:00Z",
            "2024-05-10T09:10:00Z",
            Granularity::Hour,
            "UTC",
        );
        assert_eq!(hours.from(), utc("2024-05-10T07:00:00Z"));
        assert_eq!(hours.to(), utc("2024-05-10T10:00:00Z"));
    }

    #[test]
    fn a_to_already_on_a_boundary_is_not_moved() {
        let w = window(
            "2024-05-10T00:00:00Z",
            "2024-05-12T00:00:00Z",
            Granularity::Day,
            "UTC",
        );
        assert_eq!(w.to(), utc("2024-05-12T00:00:00Z"));
        assert_eq!(w.len(), 2);
        let sydney = window(
            "2024-06-30T14:00:00Z",
            "2024-08-31T14:00:00Z",
            Granularity::Month,
            "Australia/Sydney",
        );
        assert_eq!(sydney.to(), utc("2024-08-31T14:00:00Z"));
        assert_eq!(sydney.len(), 2);
    }

    #[test]
    fn february_2024_has_29_day_buckets_and_the_29th_is_one_of_them() {
        let w = window(
            "2024-02-01T00:00:00Z",
            "2024-03-01T00:00:00Z",
            Granularity::Day,
            "UTC",
        );
        assert_eq!(w.len(), 29);
        assert_eq!(
            w.bucket(28),
            (utc("2024-02-29T00:00:00Z"), utc("2024-03-01T00:00:00Z"))
        );
    }

    #[test]
    fn week_buckets_cross_the_2025_boundary_in_one_week() {
        let w = window(
            "2024-12-25T00:00:00Z",
            "2025-01-08T00:00:00Z",
            Granularity::Week,
            "UTC",
        );
        assert_eq!(
            w.bucket_starts(),
            &[
                utc("2024-12-23T00:00:00Z"),
                utc("2024-12-30T00:00:00Z"),
                utc("2025-01-06T00:00:00Z"),
            ]
        );
        assert_eq!(w.bucket_index(utc("2025-01-01T12:00:00Z")), Some(1));
    }

    #[test]
    fn fixed_offset_windows_use_the_offset_for_day_boundaries() {
        let w = window(
            "2024-01-01T00:00:00Z",
            "2024-01-02T00:00:00Z",
            Granularity::Day,
            "+05:30",
        );
        assert_eq!(w.from(), utc("2023-12-31T18:30:00Z"));
        assert_eq!(w.to(), utc("2024-01-02T18:30:00Z"));
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn bucket_index_finds_the_bucket_and_refuses_instants_outside() {
        let w = window(
            "2024-10-26T22:00:00Z",
            "2024-10-28T23:00:00Z",
            Granularity::Day,
            "Europe/Madrid",
        );
        assert_eq!(w.bucket_index(utc("2024-10-26T22:00:00Z")), Some(0));
        assert_eq!(w.bucket_index(utc("2024-10-27T22:59:59Z")), Some(0));
        assert_eq!(w.bucket_index(utc("2024-10-27T23:00:00Z")), Some(1));
        assert_eq!(w.bucket_index(utc("2024-10-26T21:59:59Z")), None);
        assert_eq!(w.bucket_index(w.to()), None);
    }

    #[test]
    fn previous_of_a_three_month_window_is_the_three_months_before() {
        let w = window(
            "2024-04-01T00:00:00Z",
            "2024-07-01T00:00:00Z",
            Granularity::Month,
            "UTC",
        );
        let previous = w.previous().expect("in range");
        assert_eq!(previous.from(), utc("2024-01-01T00:00:00Z"));
        assert_eq!(previous.to(), utc("2024-04-01T00:00:00Z"));
        assert_eq!(previous.len(), 3);
        assert_eq!(previous.granularity(), Granularity::Month);
    }

    #[test]
    fn previous_of_an_hour_window_is_as_many_hours_before() {
        let w = window(
            "2024-04-01T10:00:00Z",
            "2024-04-01T13:00:00Z",
            Granularity::Hour,
            "UTC",
        );
        let previous = w.previous().expect("in range");
        assert_eq!(previous.from(), utc("2024-04-01T07:00:00Z"));
        assert_eq!(previous.to(), w.from());
    }

    #[test]
    fn start_texts_are_the_bucket_starts_as_chrono_writes_them() {
        let sydney = Zone::parse("Australia/Sydney").unwrap();
        // Across the DST change of 2024-10-06 in Sydney, by DAY and by HOUR.
        for granularity in [Granularity::Day, Granularity::Hour] {
            let window = Window::new(
                utc("2024-10-03T00:00:00Z"),
                utc("2024-10-09T00:00:00Z"),
                granularity,
                sydney,
            )
            .unwrap();
            let texts: Vec<&str> = window.start_texts().iter().map(|t| &**t).collect();
            let chrono: Vec<String> = window
                .bucket_starts()
                .iter()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .collect();
            assert_eq!(texts, chrono, "{granularity:?}");
            assert!(texts.len() > 5, "{texts:?}");
        }
    }

    #[test]
    fn each_window_has_its_own_key_text_and_keeps_it() {
        let zones = [
            Zone::parse("UTC").unwrap(),
            Zone::parse("Australia/Sydney").unwrap(),
        ];
        let (from, to) = (utc("2024-10-03T00:00:00Z"), utc("2024-10-09T00:00:00Z"));
        let mut texts = std::collections::HashSet::new();
        for zone in zones {
            for granularity in [Granularity::Hour, Granularity::Day, Granularity::Week] {
                for (from, to) in [(from, to), (from, to + TimeDelta::days(7))] {
                    let window = Window::build(from, to, granularity, zone).unwrap();
                    let text = window.key_text().to_string();
                    assert_eq!(window.clone().key_text(), text, "kept with the window");
                    let again = Window::build(from, to, granularity, zone).unwrap();
                    assert_eq!(again.key_text(), text, "a function of the window");
                    assert!(texts.insert(text.clone()), "{text} twice");
                }
            }
        }
    }

    #[test]
    fn the_memo_answers_each_combination_of_inputs_with_its_own_window() {
        let (from, to) = (utc("2025-03-10T00:00:00Z"), utc("2025-03-17T00:00:00Z"));
        let sydney = Window::new(from, to, Granularity::Day, zone("Australia/Sydney"));
        let utc_days = Window::new(from, to, Granularity::Day, Zone::utc());
        let weeks = Window::new(from, to, Granularity::Week, Zone::utc());
        for (memoized, kind, z) in [
            (&sydney, Granularity::Day, zone("Australia/Sydney")),
            (&utc_days, Granularity::Day, Zone::utc()),
            (&weeks, Granularity::Week, Zone::utc()),
        ] {
            assert_eq!(memoized, &Window::build(from, to, kind, z));
            assert_eq!(
                memoized,
                &Window::new(from, to, kind, z),
                "served from the memo"
            );
            let window = memoized.as_ref().expect("a valid window");
            let stepped = window.step_back();
            assert_eq!(window.previous(), stepped, "the previous window, computed");
            assert_eq!(
                window.previous(),
                stepped,
                "the previous window, remembered"
            );
            assert_ne!(window.previous().as_ref(), Ok(window));
        }
        assert_ne!(sydney, utc_days);
        assert_ne!(utc_days, weeks);
    }

    #[test]
    fn previous_before_1900_is_out_of_range() {
        let w = window(
            "1900-01-01T00:00:00Z",
            "1901-01-01T00:00:00Z",
            Granularity::Year,
            "UTC",
        );
        assert_eq!(w.previous(), Err(WindowError::OutOfRange));
    }

    #[test]
    fn ten_thousand_buckets_are_allowed_and_one_more_is_refused() {
        let from = utc("2024-01-01T00:00:00Z");
        let ok = Window::new(
            from,
            from + TimeDelta::hours(10_000),
            Granularity::Hour,
            Zone::utc(),
        )
        .expect("exactly the limit");
        assert_eq!(ok.len(), MAX_BUCKETS);
        let refused = Window::new(
            from,
            from + TimeDelta::hours(10_001),
            Granularity::Hour,
            Zone::utc(),
        );
        assert_eq!(
            refused,
            Err(WindowError::TooManyBuckets {
                count: 10_001,
                max: MAX_BUCKETS,
                granularity: "HOUR",
            })
        );
        let days = Window::new(
            from,
            from + TimeDelta::days(10_000),
            Granularity::Day,
            Zone::utc(),
        )
        .expect("exactly the limit");
        assert_eq!(days.len(), MAX_BUCKETS);
        let refused = Window::new(
            from,
            from + TimeDelta::days(10_001),
            Granularity::Day,
            Zone::utc(),
        );
        assert!(matches!(
            refused,
            Err(WindowError::TooManyBuckets { count: 10_001, .. })
        ));
    }

    #[test]
    fn a_300_year_hour_window_is_refused_quickly() {
        let started = Instant::now();
        let result = Window::new(
            utc("1900-01-01T00:00:00Z"),
            utc("2200-01-01T00:00:00Z"),
            Granularity::Hour,
            zone("Australia/Sydney"),
        );
        let elapsed = started.elapsed();
        let Err(WindowError::TooManyBuckets { count, .. }) = result else {
            panic!("expected TooManyBuckets, got {result:?}");
        };
        assert!(count > 2_600_000, "{count}");
        // Generous bound for a shared, unoptimised test build; building 2.6M buckets is not it.
        assert!(elapsed < Duration::from_millis(50), "{elapsed:?}");
        let days = Window::new(
            utc("1900-01-01T00:00:00Z"),
            utc("2200-01-01T00:00:00Z"),
            Granularity::Day,
            zone("Australia/Sydney"),
        );
        assert!(matches!(days, Err(WindowError::TooManyBuckets { count, .. }) if count > 100_000));
    }

    #[test]
    fn the_too_many_buckets_message_says_what_to_do() {
        let err = WindowError::TooManyBuckets {
            count: 10_001,
            max: MAX_BUCKETS,
            granularity: "HOUR",
        };
        assert_eq!(
            err.to_string(),
            "window has 10001 HOUR buckets; at most 10000 are allowed in one series: \
             use a coarser granularity or a shorter window"
        );
    }

    #[test]
    fn from_not_before_to_is_refused() {
        let t = utc("2024-01-01T00:00:00Z");
        assert_eq!(
            Window::new(t, t, Granularity::Day, Zone::utc()),
            Err(WindowError::Empty { from: t, to: t })
        );
        let err = Window::new(t + TimeDelta::hours(1), t, Granularity::Day, Zone::utc())
            .expect_err("reversed");
        assert!(
            err.to_string().contains("must be before window.to"),
            "{err}"
        );
    }

    #[test]
    fn instants_outside_1900_to_2200_are_refused() {
        assert_eq!(
            Window::new(
                utc("1899-12-31T23:00:00Z"),
                utc("1900-01-02T00:00:00Z"),
                Granularity::Day,
                Zone::utc()
            ),
            Err(WindowError::OutOfRange)
        );
        assert_eq!(
            Window::new(
                utc("2200-06-01T00:00:00Z"),
                DateTime::<Utc>::MAX_UTC,
                Granularity::Year,
                Zone::utc()
            ),
            Err(WindowError::OutOfRange)
        );
        assert!(Window::new(
            utc("2200-01-01T00:00:00Z"),
            utc("2201-01-01T00:00:00Z"),
            Granularity::Year,
            Zone::utc()
        )
        .is_ok());
    }

    #[test]
    fn a_window_always_has_at_least_one_bucket() {
        let w = window(
            "2024-05-10T07:30:00Z",
            "2024-05-10T07:30:01Z",
            Granularity::Year,
            "Australia/Sydney",
        );
        assert_eq!(w.len(), 1);
        assert!(!w.is_empty());
        assert_eq!(w.from(), utc("2023-12-31T13:00:00Z"));
        assert_eq!(w.to(), utc("2024-12-31T13:00:00Z"));
        assert_eq!(w.zone(), zone("Australia/Sydney"));
    }
}
