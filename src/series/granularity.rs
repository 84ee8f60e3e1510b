//! Bucket sizes and the calendar arithmetic behind them.
//!
//! HOUR buckets are real hours (3,600 s) aligned to the zone's wall-clock hours. DAY, WEEK,
//! MONTH and YEAR buckets are *calendar* periods in the zone: each starts at the local midnight
//! that opens the period (as resolved by [`Zone::instant_of`], so a skipped midnight starts the
//! day at the first instant that exists), which makes a DST day 23 or 25 hours long and a MONTH
//! a calendar month. Every boundary is computed from local dates, never by adding fixed
//! durations, so `floor`, `next` and `prev` always agree with each other.

use std::fmt;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc};

use crate::series::zone::{saturating_add, Zone};

/// How many periods `next`/`prev` may skip looking for a boundary that exists. A calendar
/// day can vanish entirely (Pacific/Apia skipped 2011-12-30), so the boundary one period
/// away may coincide with the current one; two periods always suffice in real tz data.
const MAX_SKIPPED_PERIODS: usize = 3;

/// The size of a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    /// One real hour, starting on the zone's wall-clock hour.
    Hour,
    /// A local calendar day (23, 24 or 25 hours).
    Day,
    /// A local ISO week, Monday to Sunday.
    Week,
    /// A local calendar month.
    Month,
    /// A local calendar year.
    Year,
}

impl Granularity {
    /// Start of the bucket containing `instant`, in `zone` (calendar, DST-correct).
    ///
    /// HOUR subtracts the minutes and seconds the wall clock shows at `instant`, so the
    /// repeated hour of a DST fall-back is two separate buckets rather than one.
    pub fn floor(self, instant: DateTime<Utc>, zone: Zone) -> DateTime<Utc> {
        let local = zone.local(instant);
        match self {
            Granularity::Hour => {
                let into_hour = TimeDelta::seconds(i64::from(local.minute() * 60 + local.second()))
                    + TimeDelta::nanoseconds(i64::from(local.nanosecond()));
                saturating_add(instant, -into_hour)
            }
            _ => self.start_of(self.period_start(local.date()), zone),
        }
    }

    /// Start of the bucket after the one starting at `bucket_start` (HOUR: +1h of real time;
    /// DAY..YEAR: next local calendar boundary, so a DST day is 23 or 25 h long).
    ///
    /// For DAY..YEAR any instant of a bucket gives the start of the following bucket.
    /// Saturates at chrono's maximum instant instead of overflowing.
    pub fn next(self, bucket_start: DateTime<Utc>, zone: Zone) -> DateTime<Utc> {
        if self == Granularity::Hour {
            return saturating_add(bucket_start, TimeDelta::hours(1));
        }
        let mut date = self.period_start(zone.local(bucket_start).date());
        for _ in 0..MAX_SKIPPED_PERIODS {
            let Some(following) = self.shift(date, 1) else {
                break;
            };
            let start = self.start_of(following, zone);
            if start > bucket_start {
                return start;
            }
            date = following;
        }
        DateTime::<Utc>::MAX_UTC
    }

    /// Start of the bucket before the one starting at `bucket_start`.
    ///
    /// HOUR: -1h of real time. For DAY..YEAR any instant of a bucket gives the start of the
    /// preceding bucket. Saturates at chrono's minimum instant instead of overflowing.
    pub fn prev(self, bucket_start: DateTime<Utc>, zone: Zone) -> DateTime<Utc> {
        if self == Granularity::Hour {
            return saturating_add(bucket_start, -TimeDelta::hours(1));
        }
        let current = self.floor(bucket_start, zone);
        let mut date = self.period_start(zone.local(bucket_start).date());
        for _ in 0..MAX_SKIPPED_PERIODS {
            let Some(preceding) = self.shift(date, -1) else {
                break;
            };
            let start = self.start_of(preceding, zone);
            if start < current {
                return start;
            }
            date = preceding;
        }
        DateTime::<Utc>::MIN_UTC
    }

    /// The GraphQL enum name: "HOUR", "DAY", "WEEK", "MONTH", "YEAR".
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Hour => "HOUR",
            Granularity::Day => "DAY",
            Granularity::Week => "WEEK",
            Granularity::Month => "MONTH",
            Granularity::Year => "YEAR",
        }
    }

    /// The first local date of the calendar period containing `date` (HOUR and DAY: the date).
    pub(crate) fn period_start(self, date: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Hour | Granularity::Day => date,
            Granularity::Week => date
                .checked_sub_days(chrono::Days::new(u64::from(
                    date.weekday().num_days_from_monday(),
                )))
                .unwrap_or(date),
            Granularity::Month => date.with_day(1).unwrap_or(date),
            Granularity::Year => NaiveDate::from_ymd_opt(date.year(), 1, 1).unwrap_or(date),
        }
    }

    /// `date` (a period start) moved by `n` periods; `None` beyond chrono's calendar.
    fn shift(self, date: NaiveDate, n: i32) -> Option<NaiveDate> {
        let magnitude = n.unsigned_abs();
        match self {
            Granularity::Hour | Granularity::Day => {
                let days = chrono::Days::new(u64::from(magnitude));
                if n >= 0 {
                    date.checked_add_days(days)
                } else {
                    date.checked_sub_days(days)
                }
            }
            Granularity::Week => {
                let days = chrono::Days::new(7 * u64::from(magnitude));
                if n >= 0 {
                    date.checked_add_days(days)
                } else {
                    date.checked_sub_days(days)
                }
            }
            Granularity::Month | Granularity::Year => {
                let per = if self == Granularity::Year { 12 } else { 1 };
                let months = Months::new(magnitude.checked_mul(per)?);
                if n >= 0 {
                    date.checked_add_months(months)
                } else {
                    date.checked_sub_months(months)
                }
            }
        }
    }

    /// The instant a period starting on local `date` begins: its local midnight, or the first
    /// instant after it when DST skipped that midnight.
    fn start_of(self, date: NaiveDate, zone: Zone) -> DateTime<Utc> {
        zone.instant_of(date.and_time(NaiveTime::MIN))
    }
}

impl fmt::Display for Granularity {
    /// The GraphQL enum name, as [`Granularity::name`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("test instant parses")
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(name).expect("test zone parses")
    }

    /// Length in hours of the DAY bucket containing `instant`.
    fn day_hours(instant: &str, zone: Zone) -> i64 {
        let start = Granularity::Day.floor(utc(instant), zone);
        (Granularity::Day.next(start, zone) - start).num_hours()
    }

    #[test]
    fn a_dst_forward_day_in_madrid_has_23_hours() {
        assert_eq!(day_hours("2024-03-31T12:00:00Z", zone("Europe/Madrid")), 23);
    }

    #[test]
    fn a_dst_back_day_in_madrid_has_25_hours() {
        assert_eq!(day_hours("2024-10-27T12:00:00Z", zone("Europe/Madrid")), 25);
    }

    #[test]
    fn a_dst_forward_day_in_sydney_has_23_hours() {
        assert_eq!(
            day_hours("2024-10-06T03:00:00Z", zone("Australia/Sydney")),
            23
        );
    }

    #[test]
    fn a_dst_back_day_in_sydney_has_25_hours() {
        assert_eq!(
            day_hours("2024-04-07T03:00:00Z", zone("Australia/Sydney")),
            25
        );
    }

    #[test]
    fn an_ordinary_day_has_24_hours() {
        assert_eq!(day_hours("2024-06-15T12:00:00Z", zone("Europe/Madrid")), 24);
    }

    #[test]
    fn a_day_starts_at_local_midnight() {
        // 2024-06-15 in Madrid (CEST, +02:00) starts at 22:00Z the day before.
        assert_eq!(
            Granularity::Day.floor(utc("2024-06-15T12:00:00Z"), zone("Europe/Madrid")),
            utc("2024-06-14T22:00:00Z")
        );
        assert_eq!(
            Granularity::Day.floor(utc("2024-06-15T12:00:00Z"), zone("+05:30")),
            utc("2024-06-14T18:30:00Z")
        );
    }

    #[test]
    fn a_day_whose_midnight_was_skipped_starts_when_the_clock_resumes() {
        // Sao Paulo 2018-11-04: 00:00 -03 jumped to 01:00 -02 (03:00Z).
        let sao_paulo = zone("America/Sao_Paulo");
        let start = Granularity::Day.floor(utc("2018-11-04T12:00:00Z"), sao_paulo);
        assert_eq!(start, utc("2018-11-04T03:00:00Z"));
        assert_eq!(
            Granularity::Day.prev(start, sao_paulo),
            utc("2018-11-03T03:00:00Z")
        );
        assert_eq!(
            Granularity::Day.next(start, sao_paulo),
            utc("2018-11-05T02:00:00Z")
        );
    }

    #[test]
    fn a_calendar_day_that_never_happened_is_skipped_rather_than_made_empty() {
        // Pacific/Apia jumped from 2011-12-29 24:00 (-10) straight to 2011-12-31 00:00 (+14).
        let apia = zone("Pacific/Apia");
        let dec29 = Granularity::Day.floor(utc("2011-12-29T12:00:00Z"), apia);
        let dec31 = Granularity::Day.next(dec29, apia);
        assert_eq!(dec31, utc("2011-12-30T10:00:00Z"));
        assert_eq!(apia.local(dec31).date().to_string(), "2011-12-31");
        assert_eq!(Granularity::Day.prev(dec31, apia), dec29);
    }

    #[test]
    fn hour_floor_follows_half_hour_offsets() {
        assert_eq!(
            Granularity::Hour.floor(utc("2024-01-01T10:10:00Z"), zone("+05:30")),
            utc("2024-01-01T09:30:00Z")
        );
    }

    #[test]
    fn the_repeated_hour_of_a_fall_back_is_two_hour_buckets() {
        // Madrid 2024-10-27: local 02:00-03:00 happens at 00:00Z (CEST) and 01:00Z (CET).
        let madrid = zone("Europe/Madrid");
        assert_eq!(
            Granularity::Hour.floor(utc("2024-10-27T00:40:00Z"), madrid),
            utc("2024-10-27T00:00:00Z")
        );
        assert_eq!(
            Granularity::Hour.floor(utc("2024-10-27T01:40:00Z"), madrid),
            utc("2024-10-27T01:00:00Z")
        );
    }

    #[test]
    fn week_starts_on_monday_across_the_2025_boundary() {
        let utc_zone = Zone::utc();
        // 2025-01-01 is a Wednesday; its ISO week started on Monday 2024-12-30.
        let start = Granularity::Week.floor(utc("2025-01-01T12:00:00Z"), utc_zone);
        assert_eq!(start, utc("2024-12-30T00:00:00Z"));
        assert_eq!(
            Granularity::Week.floor(utc("2025-01-05T23:59:59Z"), utc_zone),
            start
        );
        assert_eq!(
            Granularity::Week.next(start, utc_zone),
            utc("2025-01-06T00:00:00Z")
        );
        assert_eq!(
            Granularity::Week.prev(start, utc_zone),
            utc("2024-12-23T00:00:00Z")
        );
    }

    #[test]
    fn month_and_year_in_sydney_start_at_local_midnight() {
        let sydney = zone("Australia/Sydney");
        // 2024-07-01 00:00 AEST (+10:00).
        assert_eq!(
            Granularity::Month.floor(utc("2024-07-15T00:00:00Z"), sydney),
            utc("2024-06-30T14:00:00Z")
        );
        // 2024-01-01 00:00 AEDT (+11:00).
        assert_eq!(
            Granularity::Year.floor(utc("2024-06-15T00:00:00Z"), sydney),
            utc("2023-12-31T13:00:00Z")
        );
        assert_eq!(
            Granularity::Year.next(utc("2023-12-31T13:00:00Z"), sydney),
            utc("2024-12-31T13:00:00Z")
        );
        // October 2024 (DST starts on the 6th): 31 days minus one hour.
        let october = utc("2024-09-30T14:00:00Z");
        assert_eq!(
            Granularity::Month.next(october, sydney) - october,
            TimeDelta::days(31) - TimeDelta::hours(1)
        );
    }

    #[test]
    fn leap_day_2024_is_its_own_day_and_february_ends_on_it() {
        let utc_zone = Zone::utc();
        let leap = Granularity::Day.floor(utc("2024-02-29T15:00:00Z"), utc_zone);
        assert_eq!(leap, utc("2024-02-29T00:00:00Z"));
        assert_eq!(
            Granularity::Day.next(leap, utc_zone),
            utc("2024-03-01T00:00:00Z")
        );
        let feb = utc("2024-02-01T00:00:00Z");
        assert_eq!(
            Granularity::Month.next(feb, utc_zone) - feb,
            TimeDelta::days(29)
        );
    }

    #[test]
    fn prev_undoes_next_for_every_granularity() {
        let sydney = zone("Australia/Sydney");
        for g in [
            Granularity::Hour,
            Granularity::Day,
            Granularity::Week,
            Granularity::Month,
            Granularity::Year,
        ] {
            let start = g.floor(utc("2024-10-06T03:00:00Z"), sydney);
            assert_eq!(g.prev(g.next(start, sydney), sydney), start, "{g}");
            assert_eq!(
                g.floor(g.next(start, sydney), sydney),
                g.next(start, sydney),
                "{g}"
            );
        }
    }

    #[test]
    fn granularities_are_ordered_finest_first_and_named_as_in_graphql() {
        assert!(Granularity::Hour < Granularity::Day);
        assert!(Granularity::Month < Granularity::Year);
        assert_eq!(Granularity::Week.name(), "WEEK");
        assert_eq!(Granularity::Year.to_string(), "YEAR");
    }

    #[test]
    fn arithmetic_at_the_edge_of_time_saturates_instead_of_panicking() {
        let max = DateTime::<Utc>::MAX_UTC;
        assert_eq!(Granularity::Hour.next(max, Zone::utc()), max);
        assert_eq!(Granularity::Year.next(max, zone("+10:00")), max);
        let min = DateTime::<Utc>::MIN_UTC;
        assert_eq!(Granularity::Month.prev(min, zone("-10:00")), min);
    }
}
