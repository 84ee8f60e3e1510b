//! Time zones: what a window's buckets are cut in.
//!
//! A [`Zone`] is either an IANA zone (`Australia/Sydney`, with its DST rules from chrono-tz)
//! or a fixed UTC offset (`+05:30`). It answers the two questions the bucket arithmetic needs:
//! "what does the wall clock show at this instant?" ([`Zone::local`]) and "when does the wall
//! clock first show this local time?" ([`Zone::instant_of`]). The second is where DST bites:
//! a local midnight can be skipped (a gap) or happen twice (an overlap), and every bucket
//! boundary in the engine goes through that one function so the rule is applied the same way
//! everywhere.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// The largest offset we accept, in seconds (±18:00, the range RFC 3339 / ISO 8601 tools use).
const MAX_OFFSET_SECONDS: i32 = 18 * 3600;

/// A time zone: an IANA name or a fixed UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Zone {
    /// An IANA zone with its full history of offsets (DST included).
    Named(Tz),
    /// A constant offset from UTC; never has DST.
    Fixed(FixedOffset),
}

/// A time-zone string that is neither an IANA name nor a valid UTC offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "time zone {input:?} is not valid: {reason}; use an IANA name such as \"Australia/Sydney\", \
     or an offset \"+10:00\", \"-03:30\", \"Z\""
)]
pub struct ZoneError {
    input: String,
    reason: String,
}

impl ZoneError {
    fn new(input: &str, reason: impl Into<String>) -> ZoneError {
        ZoneError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }

    /// The string that failed to parse, exactly as given.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl Zone {
    /// Accepts IANA names (case-sensitive as chrono-tz), "UTC", "Z", "+HH:MM", "-HH:MM", "+HHMM",
    /// "-HHMM" (offsets within ±18:00). Rejects empty strings, junk, out-of-range offsets.
    ///
    /// "UTC" is the IANA zone of that name; "Z" and offsets become [`Zone::Fixed`], so that
    /// [`Zone`]'s `Display` gives back what the caller wrote (modulo "Z" → "+00:00").
    pub fn parse(s: &str) -> Result<Zone, ZoneError> {
        if s.is_empty() {
            return Err(ZoneError::new(s, "it is empty"));
        }
        if s == "Z" {
            return Ok(Zone::Fixed(
                FixedOffset::east_opt(0).expect("0 is a valid offset"),
            ));
        }
        if let Some(rest) = s.strip_prefix('+') {
            return parse_offset(s, rest, 1);
        }
        if let Some(rest) = s.strip_prefix('-') {
            return parse_offset(s, rest, -1);
        }
        if let Ok(tz) = s.parse::<Tz>() {
            return Ok(Zone::Named(tz));
        }
        // chrono-tz is case-sensitive; a near miss deserves a pointer to the right spelling
        // (this scan only runs on the error path, over ~600 names).
        let reason = match chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(s))
        {
            Some(tz) => format!(
                "IANA names are case-sensitive, did you mean {:?}?",
                tz.name()
            ),
            None => "it is not a known IANA zone name nor an offset".to_owned(),
        };
        Err(ZoneError::new(s, reason))
    }

    /// The IANA zone "UTC".
    pub fn utc() -> Zone {
        Zone::Named(Tz::UTC)
    }

    /// The UTC offset in force at `instant`.
    pub fn offset_at(&self, instant: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Named(tz) => tz.offset_from_utc_datetime(&instant.naive_utc()).fix(),
            Zone::Fixed(offset) => *offset,
        }
    }

    /// True when the offset is 0 at every instant (Fixed(0), UTC, Etc/UTC, Etc/GMT, GMT, ...).
    ///
    /// Named zones are judged by name, not by sampling offsets: zones such as Africa/Abidjan
    /// or Atlantic/Reykjavik are at +00:00 today but had other offsets in the past, and a
    /// window over those years must not be treated as UTC.
    pub fn is_utc(&self) -> bool {
        match self {
            Zone::Fixed(offset) => offset.local_minus_utc() == 0,
            Zone::Named(tz) => matches!(
                tz,
                Tz::UTC
                    | Tz::Etc__UTC
                    | Tz::Etc__UCT
                    | Tz::UCT
                    | Tz::Etc__Universal
                    | Tz::Universal
                    | Tz::Etc__Zulu
                    | Tz::Zulu
                    | Tz::Etc__GMT
                    | Tz::Etc__GMTPlus0
                    | Tz::Etc__GMTMinus0
                    | Tz::Etc__GMT0
                    | Tz::GMT
                    | Tz::GMTPlus0
                    | Tz::GMTMinus0
                    | Tz::GMT0
                    | Tz::Etc__Greenwich
                    | Tz::Greenwich
            ),
        }
    }

    /// Local calendar date/time of an instant.
    ///
    /// Saturates at chrono's representable range instead of panicking for instants at its
    /// very edge (chrono's own `naive_local` panics there).
    pub fn local(&self, instant: DateTime<Utc>) -> NaiveDateTime {
        let offset = self.offset_at(instant);
        instant
            .naive_utc()
            .checked_add_offset(offset)
            .unwrap_or(if offset.local_minus_utc() >= 0 {
                NaiveDateTime::MAX
            } else {
                NaiveDateTime::MIN
            })
    }

    /// The first instant whose local time is >= `local` (handles DST gaps: a local midnight that
    /// does not exist maps to the first existing instant after it; an ambiguous one to the earliest).
    pub fn instant_of(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self {
            Zone::Fixed(offset) => resolve(offset.from_local_datetime(&local))
                .unwrap_or_else(|| saturate_utc(local, *offset)),
            Zone::Named(tz) => {
                resolve(tz.from_local_datetime(&local)).unwrap_or_else(|| self.end_of_gap(local))
            }
        }
    }

    /// The first instant whose local time is >= `local`, for a `local` that falls in a gap
    /// (clocks jumped forward over it).
    ///
    /// A gap is one transition at instant T from offset `before` to a larger offset `after`:
    /// local times in [T+before, T+after) never happen, and T is the answer. T lies in
    /// (local-after, local-before], and local time is increasing on that short range, so a
    /// binary search over whole seconds (tz transitions are on whole seconds) finds it.
    fn end_of_gap(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let as_utc = local.and_utc();
        let day = TimeDelta::days(1);
        let before = self.offset_at(as_utc.checked_sub_signed(day).unwrap_or(as_utc));
        let after = self.offset_at(as_utc.checked_add_signed(day).unwrap_or(as_utc));
        let (lo, hi) = if after.local_minus_utc() > before.local_minus_utc() {
            (saturate_utc(local, after), saturate_utc(local, before))
        } else {
            // Two transitions within a day of each other: not in any current tz data, but
            // search a wider bracket rather than give a wrong answer.
            (
                as_utc.checked_sub_signed(day).unwrap_or(as_utc),
                as_utc.checked_add_signed(day).unwrap_or(as_utc),
            )
        };
        // Whole seconds, so that T itself (not T plus `local`'s sub-second part) is found.
        let lo = saturating_add(
            lo,
            TimeDelta::nanoseconds(-i64::from(lo.timestamp_subsec_nanos())),
        );
        let (mut below, mut above) = (0_i64, (hi - lo).num_seconds() + 1);
        // Invariant: local(lo + below) < local is assumed at 0; local(lo + above) >= local.
        if self.local(lo) >= local {
            return lo;
        }
        while above - below > 1 {
            let mid = below + (above - below) / 2;
            if self.local(saturating_add(lo, TimeDelta::seconds(mid))) >= local {
                above = mid;
            } else {
                below = mid;
            }
        }
        saturating_add(lo, TimeDelta::seconds(above))
    }
}

/// `t + delta`, clamped to chrono's range: bucket arithmetic near the ends of time must
/// not panic (callers that care, such as `Window`, refuse such instants up front).
pub(crate) fn saturating_add(t: DateTime<Utc>, delta: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(delta)
        .unwrap_or(if delta > TimeDelta::zero() {
            DateTime::<Utc>::MAX_UTC
        } else {
            DateTime::<Utc>::MIN_UTC
        })
}

/// The earliest instant of a chrono local-time lookup; `None` in a gap.
fn resolve<T: TimeZone>(result: LocalResult<DateTime<T>>) -> Option<DateTime<Utc>> {
    match result {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.with_timezone(&Utc).min(b.with_timezone(&Utc))),
        LocalResult::None => None,
    }
}

/// `local - offset` as a UTC instant, clamped to chrono's range.
fn saturate_utc(local: NaiveDateTime, offset: FixedOffset) -> DateTime<Utc> {
    match local.checked_sub_offset(offset) {
        Some(naive) => naive.and_utc(),
        None if offset.local_minus_utc() >= 0 => DateTime::<Utc>::MIN_UTC,
        None => DateTime::<Utc>::MAX_UTC,
    }
}

/// Parses the part after the sign: "HH:MM" or "HHMM".
fn parse_offset(input: &str, rest: &str, sign: i32) -> Result<Zone, ZoneError> {
    // ASCII first, so that the byte slicing below always falls on character boundaries.
    if !rest.is_ascii() {
        return Err(ZoneError::new(
            input,
            "an offset must be written as +HH:MM, -HH:MM or +HHMM",
        ));
    }
    let (hours, minutes) = match rest.len() {
        5 if rest.as_bytes()[2] == b':' => (&rest[..2], &rest[3..]),
        4 => (&rest[..2], &rest[2..]),
        _ => {
            return Err(ZoneError::new(
                input,
                "an offset must be written as +HH:MM, -HH:MM or +HHMM",
            ))
        }
    };
    let digits = |part: &str| -> Option<i32> {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (Some(hours), Some(minutes)) = (digits(hours), digits(minutes)) else {
        return Err(ZoneError::new(
            input,
            "an offset must be written as +HH:MM, -HH:MM or +HHMM",
        ));
    };
    if minutes >= 60 {
        return Err(ZoneError::new(
            input,
            "the minutes of an offset must be 00-59",
        ));
    }
    let seconds = hours * 3600 + minutes * 60;
    if seconds > MAX_OFFSET_SECONDS {
        return Err(ZoneError::new(
            input,
            "an offset must be within -18:00 and +18:00",
        ));
    }
    FixedOffset::east_opt(sign * seconds)
        .map(Zone::Fixed)
        .ok_or_else(|| ZoneError::new(input, "an offset must be within -18:00 and +18:00"))
}

impl fmt::Display for Zone {
    /// Named: the IANA name; Fixed: "+10:00" / "-03:30" / "+00:00" (with ":SS" only for an
    /// offset that has seconds, which [`Zone::parse`] never produces).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Named(tz) => f.write_str(tz.name()),
            Zone::Fixed(offset) => {
                let total = offset.local_minus_utc();
                let sign = if total < 0 { '-' } else { '+' };
                let abs = total.unsigned_abs();
                let (h, m, s) = (abs / 3600, abs / 60 % 60, abs % 60);
                if s == 0 {
                    write!(f, "{sign}{h:02}:{m:02}")
                } else {
                    write!(f, "{sign}{h:02}:{m:02}:{s:02}")
                }
            }
        }
    }
}

impl FromStr for Zone {
    type Err = ZoneError;

    /// Same as [`Zone::parse`].
    fn from_str(s: &str) -> Result<Zone, ZoneError> {
        Zone::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("test instant parses")
    }

    fn naive(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_opt(h, min, 0))
            .expect("test date is valid")
    }

    #[test]
    fn iana_names_and_utc_parse_as_named_zones() {
        assert_eq!(
            Zone::parse("Australia/Sydney"),
            Ok(Zone::Named(Tz::Australia__Sydney))
        );
        assert_eq!(Zone::parse("UTC"), Ok(Zone::Named(Tz::UTC)));
        assert_eq!(Zone::parse("UTC"), Ok(Zone::utc()));
        assert_eq!(
            "Europe/Madrid".parse::<Zone>(),
            Ok(Zone::Named(Tz::Europe__Madrid))
        );
    }

    #[test]
    fn offsets_parse_in_all_accepted_spellings() {
        let east = |s| Zone::Fixed(FixedOffset::east_opt(s).expect("valid"));
        assert_eq!(Zone::parse("+05:30"), Ok(east(5 * 3600 + 1800)));
        assert_eq!(Zone::parse("+0530"), Ok(east(5 * 3600 + 1800)));
        assert_eq!(Zone::parse("-03:30"), Ok(east(-(3 * 3600 + 1800))));
        assert_eq!(Zone::parse("-0330"), Ok(east(-(3 * 3600 + 1800))));
        assert_eq!(Zone::parse("Z"), Ok(east(0)));
        assert_eq!(Zone::parse("+18:00"), Ok(east(18 * 3600)));
        assert_eq!(Zone::parse("-18:00"), Ok(east(-18 * 3600)));
    }

    #[test]
    fn an_empty_zone_is_refused_with_a_message_that_says_what_is_allowed() {
        let err = Zone::parse("").expect_err("empty must fail");
        let message = err.to_string();
        assert!(message.contains("is empty"), "{message}");
        assert!(message.contains("Australia/Sydney"), "{message}");
        assert!(message.contains("+10:00"), "{message}");
    }

    #[test]
    fn junk_and_malformed_offsets_are_refused() {
        for bad in [
            "Mars/Olympus",
            "+5:30",
            "+05:3",
            "+05-30",
            "+aa:bb",
            "+05:60",
            "05:30",
            " UTC",
            "+",
            "+1",
            "+05:30:00",
            "+-5:30",
            "+1\u{e9}0",
            "-\u{e9}:00",
        ] {
            let err = Zone::parse(bad).expect_err(bad);
            assert_eq!(err.input(), bad);
        }
    }

    #[test]
    fn offsets_beyond_eighteen_hours_are_refused() {
        let err = Zone::parse("+18:01").expect_err("out of range");
        assert!(err.to_string().contains("-18:00 and +18:00"), "{err}");
        assert!(Zone::parse("-19:00").is_err());
        assert!(Zone::parse("+9900").is_err());
    }

    #[test]
    fn a_wrongly_cased_iana_name_is_refused_with_the_right_spelling() {
        let err = Zone::parse("australia/sydney").expect_err("case-sensitive");
        assert!(err.to_string().contains("\"Australia/Sydney\""), "{err}");
    }

    #[test]
    fn display_gives_the_iana_name_or_a_signed_offset() {
        assert_eq!(Zone::utc().to_string(), "UTC");
        assert_eq!(
            Zone::parse("Australia/Sydney").expect("valid").to_string(),
            "Australia/Sydney"
        );
        assert_eq!(Zone::parse("+1000").expect("valid").to_string(), "+10:00");
        assert_eq!(Zone::parse("-03:30").expect("valid").to_string(), "-03:30");
        assert_eq!(Zone::parse("Z").expect("valid").to_string(), "+00:00");
    }

    #[test]
    fn utc_like_zones_are_utc_and_zones_that_were_ever_off_zero_are_not() {
        for name in [
            "UTC",
            "Etc/UTC",
            "Etc/GMT",
            "GMT",
            "Zulu",
            "Etc/GMT-0",
            "Z",
            "+00:00",
        ] {
            assert!(Zone::parse(name).expect(name).is_utc(), "{name}");
        }
        for name in ["Europe/London", "Africa/Abidjan", "Etc/GMT+1", "+00:30"] {
            assert!(!Zone::parse(name).expect(name).is_utc(), "{name}");
        }
    }

    #[test]
    fn offset_at_follows_dst_in_sydney() {
        let sydney = Zone::Named(Tz::Australia__Sydney);
        assert_eq!(
            sydney
                .offset_at(utc("2024-01-15T00:00:00Z"))
                .local_minus_utc(),
            11 * 3600
        );
        assert_eq!(
            sydney
                .offset_at(utc("2024-07-15T00:00:00Z"))
                .local_minus_utc(),
            10 * 3600
        );
    }

    #[test]
    fn local_shows_the_wall_clock() {
        let kolkata = Zone::parse("+05:30").expect("valid");
        assert_eq!(
            kolkata.local(utc("2024-01-01T00:00:00Z")),
            naive(2024, 1, 1, 5, 30)
        );
        let madrid = Zone::Named(Tz::Europe__Madrid);
        assert_eq!(
            madrid.local(utc("2024-07-01T22:00:00Z")),
            naive(2024, 7, 2, 0, 0)
        );
    }

    #[test]
    fn a_local_time_in_a_dst_gap_maps_to_the_end_of_the_gap() {
        // Madrid 2024-03-31: 02:00 CET jumps to 03:00 CEST at 01:00Z.
        let madrid = Zone::Named(Tz::Europe__Madrid);
        assert_eq!(
            madrid.instant_of(naive(2024, 3, 31, 2, 30)),
            utc("2024-03-31T01:00:00Z")
        );
        // Sao Paulo 2018-11-04: midnight itself did not exist (00:00 -03 became 01:00 -02).
        let sao_paulo = Zone::Named(Tz::America__Sao_Paulo);
        let start = sao_paulo.instant_of(naive(2018, 11, 4, 0, 0));
        assert_eq!(start, utc("2018-11-04T03:00:00Z"));
        assert_eq!(sao_paulo.local(start), naive(2018, 11, 4, 1, 0));
    }

    #[test]
    fn an_ambiguous_local_time_maps_to_its_earliest_instant() {
        // Madrid 2024-10-27: 03:00 CEST falls back to 02:00 CET at 01:00Z; 02:30 happens twice.
        let madrid = Zone::Named(Tz::Europe__Madrid);
        assert_eq!(
            madrid.instant_of(naive(2024, 10, 27, 2, 30)),
            utc("2024-10-27T00:30:00Z")
        );
    }

    #[test]
    fn a_fixed_offset_maps_local_times_by_subtracting_the_offset() {
        let zone = Zone::parse("-03:30").expect("valid");
        assert_eq!(
            zone.instant_of(naive(2024, 1, 1, 0, 0)),
            utc("2024-01-01T03:30:00Z")
        );
    }

    #[test]
    fn local_saturates_at_the_edge_of_chronos_range_instead_of_panicking() {
        let zone = Zone::parse("+10:00").expect("valid");
        assert_eq!(zone.local(DateTime::<Utc>::MAX_UTC), NaiveDateTime::MAX);
        let zone = Zone::parse("-10:00").expect("valid");
        assert_eq!(zone.local(DateTime::<Utc>::MIN_UTC), NaiveDateTime::MIN);
        assert_eq!(
            zone.instant_of(NaiveDateTime::MAX),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
