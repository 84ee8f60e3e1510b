//! Resampling: putting provider values on a window's buckets, and reading them back.
//!
//! Providers answer in their own buckets (UTC days, local hours, one row per user-day, ...).
//! [`resample`] puts each upstream [`Sample`] on the window bucket that contains its midpoint
//! and merges the samples that share a bucket according to the series' [`Aggregation`],
//! recording in [`Bucketed::exact`] whether that was a faithful re-bucketing or an
//! approximation (SPEC §3). [`combine`] adds providers together, [`Bucketed::summary`] gives
//! the whole-window total/min/max and [`Bucketed::points`] the GraphQL points with a [`Fill`].

use std::borrow::Borrow;

use chrono::{DateTime, Utc};

use crate::series::window::Window;

/// How the values of one series merge over time (SPEC §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregation {
    /// Counts: values add up.
    Sum,
    /// Means (durations, percentages, scores): merged by a weighted mean when weights are known.
    Average,
    /// Distinct counts (active users): cannot be added; merged values are approximations.
    Distinct,
    /// Levels (total users): the latest value wins.
    Last,
}

/// How empty buckets appear in `points(fill:)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// An empty bucket is a point with value 0.
    Zero,
    /// An empty bucket is a point with a null value.
    Null,
    /// An empty bucket has no point.
    Omit,
}

impl Fill {
    /// ZERO for SUM, NULL otherwise (SPEC §2): "no conversations" is 0, but "no response
    /// time measured" is not a response time of 0 seconds.
    pub fn default_for(aggregation: Aggregation) -> Fill {
        match aggregation {
            Aggregation::Sum => Fill::Zero,
            Aggregation::Average | Aggregation::Distinct | Aggregation::Last => Fill::Null,
        }
    }
}

/// One upstream value covering the source bucket [start, end).
///
/// A sample with `end <= start` is treated as a value at the instant `start`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Start of the provider's bucket.
    pub start: DateTime<Utc>,
    /// End (exclusive) of the provider's bucket.
    pub end: DateTime<Utc>,
    /// The provider's value for that bucket. Non-finite values are dropped (and make the
    /// result inexact): a NaN would otherwise poison every sum and comparison after it.
    pub value: f64,
    /// e.g. the session count behind an average; None = unknown
    ///
    /// Negative or non-finite weights are treated as unknown.
    pub weight: Option<f64>,
}

/// Values of one series on the buckets of a window (one entry per bucket).
#[derive(Clone, Debug, PartialEq)]
pub struct Bucketed {
    /// One entry per window bucket; None = no sample landed in that bucket.
    pub values: Vec<Option<f64>>,
    /// AVERAGE: sum of weights per bucket when all known, else None. Always None for the
    /// other aggregations, where weights mean nothing.
    pub weights: Vec<Option<f64>>,
    /// False when any bucket had to be approximated (see [`resample`]).
    pub exact: bool,
    /// A whole-window total the provider computed itself (e.g. Chat-Tonic's "0" row for a
    /// DISTINCT metric); used by `summary` instead of an approximation.
    pub total: Option<f64>,
}

/// Whole-window figures of a series: the GraphQL `total`, `min` and `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// SUM: sum; AVERAGE: (weighted) mean; DISTINCT: provider total or an estimate; LAST: last.
    pub total: Option<f64>,
    /// The smallest bucket value.
    pub min: Option<f64>,
    /// The largest bucket value.
    pub max: Option<f64>,
    /// false when the total itself is an approximation (DISTINCT over several buckets without a provider total)
    pub exact: bool,
}

impl Bucketed {
    /// All None, exact true.
    pub fn empty(window: &Window) -> Bucketed {
        Bucketed {
            values: vec![None; window.len()],
            weights: vec![None; window.len()],
            exact: true,
            total: None,
        }
    }

    /// The whole-window total, min and max under `aggregation` (SPEC §2 `total`).
    pub fn summary(&self, aggregation: Aggregation) -> Summary {
        let present = || self.values.iter().flatten().copied();
        let min = present().reduce(f64::min);
        let max = present().reduce(f64::max);
        let count = present().count();
        let (total, exact) = match aggregation {
            // `fold` from +0.0: `f64: Sum` of nothing is -0.0.
            // A provider's own total (or one computed from totals-only calls) wins.
            Aggregation::Sum => match self.total {
                Some(total) => (Some(total), self.exact),
                None => (Some(present().fold(0.0, |a, b| a + b)), self.exact),
            },
            Aggregation::Last => (present().last(), self.exact),
            Aggregation::Distinct => match self.total {
                Some(total) => (Some(total), true),
                // One bucket: its value is the window's distinct count.
                None if count <= 1 => (max, self.exact),
                // The users of different buckets overlap by an unknown amount: the true
                // count lies between the largest bucket and the sum; report the lower bound.
                None => (max, false),
            },
            Aggregation::Average => self.average_total(count),
        };
        Summary {
            total,
            min,
            max,
            exact,
        }
    }

    /// AVERAGE total: the provider's own total when it gave one (it saw every event, we only
    /// see rounded buckets), else the weighted mean when every present bucket has a weight,
    /// else the plain mean of the buckets (inexact).
    fn average_total(&self, count: usize) -> (Option<f64>, bool) {
        if count == 0 {
            return (None, self.exact);
        }
        if let Some(total) = self.total {
            return (Some(total), self.exact);
        }
        let mut weighted_sum = 0.0;
        let mut weight_sum = 0.0;
        let mut all_weighted = true;
        let mut plain_sum = 0.0;
        for (value, weight) in self
            .values
            .iter()
            .zip(self.weights.iter().chain(std::iter::repeat(&None)))
        {
            let Some(value) = value else { continue };
            plain_sum += value;
            match weight {
                Some(weight) => {
                    weighted_sum += value * weight;
                    weight_sum += weight;
                }
                None => all_weighted = false,
            }
        }
        if all_weighted && weight_sum > 0.0 {
            if count == 1 {
                return (Some(plain_sum), self.exact);
            }
            return (Some(weighted_sum / weight_sum), self.exact);
        }
        let mean = plain_sum / count as f64;
        if count == 1 {
            return (Some(mean), self.exact);
        }
        match self.total {
            Some(total) => (Some(total), true),
            None => (Some(mean), false),
        }
    }

    /// Points for the GraphQL `points(fill:)`: (bucket start, value); OMIT drops empty buckets,
    /// ZERO turns None into 0.0, NULL keeps None.
    ///
    /// `window` must be the window this series was resampled on; extra buckets on either
    /// side are ignored.
    pub fn points(&self, window: &Window, fill: Fill) -> Vec<(DateTime<Utc>, Option<f64>)> {
        let starts = window.bucket_starts();
        self.filled(window, fill)
            .map(|(i, v)| (starts[i], v))
            .collect()
    }

    /// [`Bucketed::points`] by bucket index: each kept bucket's index and value under `fill`.
    pub fn filled(
        &self,
        window: &Window,
        fill: Fill,
    ) -> impl Iterator<Item = (usize, Option<f64>)> + '_ {
        self.values
            .iter()
            .take(window.len())
            .enumerate()
            .filter_map(move |(i, &v)| match fill {
                Fill::Null => Some((i, v)),
                Fill::Zero => Some((i, Some(v.unwrap_or(0.0)))),
                Fill::Omit => v.map(|v| (i, Some(v))),
            })
    }
}

/// What one bucket has seen so far; turned into a value once all samples are in.
#[derive(Clone, Copy, Debug, Default)]
struct Accumulator {
    count: usize,
    sum: f64,
    weighted_sum: f64,
    weight_sum: f64,
    /// Whether any sample in the bucket had no usable weight.
    missing_weight: bool,
    /// Meaningful only when `count > 0`.
    max: f64,
    /// (start, end, value) of the latest sample, for LAST.
    latest: Option<(DateTime<Utc>, DateTime<Utc>, f64)>,
}

impl Accumulator {
    fn add(&mut self, start: DateTime<Utc>, end: DateTime<Utc>, value: f64, weight: Option<f64>) {
        self.max = if self.count == 0 {
            value
        } else {
            self.max.max(value)
        };
        self.count += 1;
        self.sum += value;
        match weight.filter(|w| w.is_finite() && *w >= 0.0) {
            Some(weight) => {
                self.weighted_sum += value * weight;
                self.weight_sum += weight;
            }
            None => self.missing_weight = true,
        }
        // Latest start wins; ties (duplicate rows) are broken by end, then by value, so the
        // result does not depend on the order the provider listed them in.
        let candidate = (start, end, value);
        let newer = match self.latest {
            None => true,
            Some(current) => {
                (candidate.0, candidate.1) > (current.0, current.1)
                    || ((candidate.0, candidate.1) == (current.0, current.1)
                        && candidate.2 > current.2)
            }
        };
        if newer {
            self.latest = Some(candidate);
        }
    }

    /// (value, weight, exact) of the bucket under `aggregation`.
    fn finish(&self, aggregation: Aggregation) -> (Option<f64>, Option<f64>, bool) {
        if self.count == 0 {
            return (None, None, true);
        }
        let merged = self.count > 1;
        match aggregation {
            Aggregation::Sum => (Some(self.sum), None, true),
            Aggregation::Average if !self.missing_weight => {
                // No weight at all (e.g. zero sessions) means no average, not an average of 0.
                // A lone sample is passed through: v·w/w is not always exactly v in floating point.
                let value = match self.count {
                    1 if self.weight_sum > 0.0 => Some(self.sum),
                    _ => (self.weight_sum > 0.0).then(|| self.weighted_sum / self.weight_sum),
                };
                (value, Some(self.weight_sum), true)
            }
            Aggregation::Average => (Some(self.sum / self.count as f64), None, !merged),
            // The distinct users of a bucket are at least those of its largest part (every
            // part's users are a subset of the bucket's) and at most the sum of the parts;
            // without the identities the max is the only value that is never an overcount.
            Aggregation::Distinct => (Some(self.max), None, !merged),
            Aggregation::Last => (self.latest.map(|(_, _, v)| v), None, true),
        }
    }
}

/// Put samples on the window's buckets.
///
/// - A sample belongs to the bucket containing its midpoint; a midpoint outside the window
///   drops the sample.
/// - `exact` becomes false when a sample that overlaps the window is not wholly inside one
///   bucket (its value is credited to one bucket but partly belongs to another, or outside),
///   when a non-finite value had to be dropped, and when merging was an approximation:
///   AVERAGE without every weight, DISTINCT of more than one sample.
/// - SUM adds, AVERAGE takes the weighted mean (plain mean when a weight is missing),
///   DISTINCT the max, LAST the value of the latest-starting sample.
///
/// O(samples · log buckets); samples may come in any order. `total` is left None: only a
/// provider can supply it.
pub fn resample(window: &Window, aggregation: Aggregation, samples: &[Sample]) -> Bucketed {
    let mut buckets = vec![Accumulator::default(); window.len()];
    let mut exact = true;
    for sample in samples {
        let start = sample.start;
        let end = sample.end.max(start);
        if !fits_one_bucket(window, start, end) {
            exact = false;
        }
        if !sample.value.is_finite() {
            exact = false;
            continue;
        }
        let midpoint = start + (end - start) / 2;
        if let Some(i) = window.bucket_index(midpoint) {
            buckets[i].add(start, end, sample.value, sample.weight);
        }
    }
    let mut values = Vec::with_capacity(buckets.len());
    let mut weights = Vec::with_capacity(buckets.len());
    for bucket in &buckets {
        let (value, weight, bucket_exact) = bucket.finish(aggregation);
        values.push(value);
        weights.push(weight);
        exact &= bucket_exact;
    }
    Bucketed {
        values,
        weights,
        exact,
        total: None,
    }
}

/// True when [start, end) does not overlap the window, or lies wholly inside one bucket.
fn fits_one_bucket(window: &Window, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    let overlaps = if end > start {
        start < window.to() && end > window.from()
    } else {
        window.bucket_index(start).is_some()
    };
    if !overlaps {
        return true;
    }
    match window.bucket_index(start) {
        Some(i) => end <= window.bucket(i).1,
        None => false,
    }
}

/// Add several providers' series bucket by bucket (SPEC §2.1: combined series are SUMs):
/// None+None=None, None+x=x; exact = all exact; total = sum of totals only if every part has one.
///
/// Parts are expected to be on the same window; a shorter part counts as None in the buckets
/// it lacks. No parts give an empty `Bucketed` with no buckets: use [`Bucketed::empty`]
/// for a series without sources.
pub fn combine<B: Borrow<Bucketed>>(parts: &[B]) -> Bucketed {
    let each = || parts.iter().map(Borrow::borrow);
    let len = each().map(|p| p.values.len()).max().unwrap_or(0);
    let add = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    };
    let mut values = vec![None; len];
    let mut weights = vec![None; len];
    for part in each() {
        for (sum, value) in values.iter_mut().zip(&part.values) {
            *sum = add(*sum, *value);
        }
        for (sum, weight) in weights.iter_mut().zip(&part.weights) {
            *sum = add(*sum, *weight);
        }
    }
    let total = if parts.is_empty() {
        None
    } else {
        each().map(|p| p.total).sum()
    };
    Bucketed {
        values,
        weights,
        exact: each().all(|p| p.exact),
        total,
    }
}

/// (total - previous) / previous; None when either is None or previous == 0.
pub fn change(total: Option<f64>, previous: Option<f64>) -> Option<f64> {
    match (total, previous) {
        (Some(total), Some(previous)) if previous != 0.0 => Some((total - previous) / previous),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{Granularity, Zone};
    use chrono::TimeDelta;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("test instant parses")
    }

    fn window(from: &str, to: &str, g: Granularity, zone: &str) -> Window {
        Window::new(
            utc(from),
            utc(to),
            g,
            Zone::parse(zone).expect("test zone parses"),
        )
        .expect("test window is valid")
    }

    fn sample(start: &str, hours: i64, value: f64, weight: Option<f64>) -> Sample {
        let start = utc(start);
        Sample {
            start,
            end: start + TimeDelta::hours(hours),
            value,
            weight,
        }
    }

    fn utc_days() -> Window {
        window(
            "2024-05-10T00:00:00Z",
            "2024-05-13T00:00:00Z",
            Granularity::Day,
            "UTC",
        )
    }

    #[test]
    fn hourly_sums_add_up_into_days_exactly() {
        let samples = [
            sample("2024-05-10T01:00:00Z", 1, 2.0, None),
            sample("2024-05-10T23:00:00Z", 1, 3.0, None),
            sample("2024-05-12T00:00:00Z", 1, 4.0, None),
        ];
        let b = resample(&utc_days(), Aggregation::Sum, &samples);
        assert_eq!(b.values, vec![Some(5.0), None, Some(4.0)]);
        assert!(b.exact);
        let s = b.summary(Aggregation::Sum);
        assert_eq!(
            (s.total, s.min, s.max, s.exact),
            (Some(9.0), Some(4.0), Some(5.0), true)
        );
    }

    #[test]
    fn samples_may_arrive_in_any_order() {
        let mut samples = vec![
            sample("2024-05-10T01:00:00Z", 1, 2.0, Some(1.0)),
            sample("2024-05-11T05:00:00Z", 1, 7.0, Some(3.0)),
            sample("2024-05-10T02:00:00Z", 1, 4.0, Some(2.0)),
            sample("2024-05-12T09:00:00Z", 1, 1.0, Some(1.0)),
        ];
        for aggregation in [
            Aggregation::Sum,
            Aggregation::Average,
            Aggregation::Distinct,
            Aggregation::Last,
        ] {
            let forward = resample(&utc_days(), aggregation, &samples);
            samples.reverse();
            assert_eq!(resample(&utc_days(), aggregation, &samples), forward);
        }
    }

    #[test]
    fn weighted_averages_are_exact_weighted_means() {
        let samples = [
            sample("2024-05-10T01:00:00Z", 1, 10.0, Some(1.0)),
            sample("2024-05-10T02:00:00Z", 1, 20.0, Some(3.0)),
            sample("2024-05-11T02:00:00Z", 1, 40.0, Some(4.0)),
        ];
        let b = resample(&utc_days(), Aggregation::Average, &samples);
        assert_eq!(b.values, vec![Some(17.5), Some(40.0), None]);
        assert_eq!(b.weights, vec![Some(4.0), Some(4.0), None]);
        assert!(b.exact);
        let s = b.summary(Aggregation::Average);
        // (17.5·4 + 40·4) / 8
        assert_eq!(s.total, Some(28.75));
        assert!(s.exact);
    }

    #[test]
    fn unweighted_averages_of_several_samples_are_plain_means_and_inexact() {
        let samples = [
            sample("2024-05-10T01:00:00Z", 1, 10.0, None),
            sample("2024-05-10T02:00:00Z", 1, 20.0, Some(3.0)),
            sample("2024-05-11T02:00:00Z", 1, 40.0, None),
        ];
        let b = resample(&utc_days(), Aggregation::Average, &samples);
        assert_eq!(b.values, vec![Some(15.0), Some(40.0), None]);
        assert_eq!(b.weights, vec![None, None, None]);
        assert!(!b.exact);
        let s = b.summary(Aggregation::Average);
        assert_eq!(s.total, Some(27.5));
        assert!(!s.exact);
    }

    #[test]
    fn a_single_unweighted_average_per_bucket_stays_exact() {
        let samples = [sample("2024-05-10T00:00:00Z", 24, 12.0, None)];
        let b = resample(&utc_days(), Aggregation::Average, &samples);
        assert_eq!(b.values[0], Some(12.0));
        assert!(b.exact);
        let s = b.summary(Aggregation::Average);
        assert_eq!((s.total, s.exact), (Some(12.0), true));
    }

    #[test]
    fn an_average_with_zero_total_weight_has_no_value() {
        let samples = [
            sample("2024-05-10T01:00:00Z", 1, 10.0, Some(0.0)),
            sample("2024-05-10T02:00:00Z", 1, 20.0, Some(0.0)),
        ];
        let b = resample(&utc_days(), Aggregation::Average, &samples);
        assert_eq!(b.values[0], None);
        assert_eq!(b.weights[0], Some(0.0));
        assert!(b.exact);
        assert_eq!(b.summary(Aggregation::Average).total, None);
    }

    #[test]
    fn utc_days_onto_sydney_days_are_inexact() {
        let sydney = window(
            "2024-05-10T00:00:00Z",
            "2024-05-12T00:00:00Z",
            Granularity::Day,
            "Australia/Sydney",
        );
        let samples = [sample("2024-05-10T00:00:00Z", 24, 5.0, None)];
        let b = resample(&sydney, Aggregation::Sum, &samples);
        assert!(!b.exact);
        // The midpoint 12:00Z is 22:00 on the 10th in Sydney (AEST, +10:00).
        let at = sydney
            .bucket_index(utc("2024-05-10T12:00:00Z"))
            .expect("midpoint is inside");
        assert_eq!(b.values[at], Some(5.0));
        assert_eq!(b.values.iter().flatten().count(), 1);
    }

    #[test]
    fn utc_days_onto_utc_days_are_exact() {
        let samples = [
            sample("2024-05-10T00:00:00Z", 24, 5.0, None),
            sample("2024-05-11T00:00:00Z", 24, 6.0, None),
        ];
        let b = resample(&utc_days(), Aggregation::Sum, &samples);
        assert_eq!(b.values, vec![Some(5.0), Some(6.0), None]);
        assert!(b.exact);
    }

    #[test]
    fn a_utc_day_onto_hour_buckets_does_not_claim_exactness() {
        let hours = window(
            "2024-05-10T00:00:00Z",
            "2024-05-11T00:00:00Z",
            Granularity::Hour,
            "UTC",
        );
        let b = resample(
            &hours,
            Aggregation::Sum,
            &[sample("2024-05-10T00:00:00Z", 24, 24.0, None)],
        );
        assert!(!b.exact);
        assert_eq!(b.values[12], Some(24.0));
    }

    #[test]
    fn samples_outside_the_window_are_dropped_and_straddling_ones_make_it_inexact() {
        let outside = [sample("2024-05-20T00:00:00Z", 24, 5.0, None)];
        let b = resample(&utc_days(), Aggregation::Sum, &outside);
        assert_eq!(b.values, vec![None, None, None]);
        assert!(b.exact);
        // Covers 2024-05-09 18:00Z .. 05-10 06:00Z: midpoint on the 10th at 00:00Z.
        let straddling = [sample("2024-05-09T18:00:00Z", 12, 5.0, None)];
        let b = resample(&utc_days(), Aggregation::Sum, &straddling);
        assert_eq!(b.values[0], Some(5.0));
        assert!(!b.exact);
    }

    #[test]
    fn non_finite_values_are_dropped_and_make_the_series_inexact() {
        let samples = [
            sample("2024-05-10T01:00:00Z", 1, f64::NAN, None),
            sample("2024-05-10T02:00:00Z", 1, 3.0, None),
        ];
        let b = resample(&utc_days(), Aggregation::Sum, &samples);
        assert_eq!(b.values[0], Some(3.0));
        assert!(!b.exact);
    }

    #[test]
    fn distinct_samples_merged_into_one_bucket_give_their_max_and_are_inexact() {
        let samples = [
            sample("2024-05-10T01:00:00Z", 1, 7.0, None),
            sample("2024-05-10T02:00:00Z", 1, 9.0, None),
            sample("2024-05-11T02:00:00Z", 1, 4.0, None),
        ];
        let b = resample(&utc_days(), Aggregation::Distinct, &samples);
        assert_eq!(b.values, vec![Some(9.0), Some(4.0), None]);
        assert!(!b.exact);
        let s = b.summary(Aggregation::Distinct);
        assert_eq!((s.total, s.exact), (Some(9.0), false));
    }

    #[test]
    fn a_distinct_series_with_a_provider_total_has_an_exact_total() {
        let samples = [
            sample("2024-05-10T00:00:00Z", 24, 7.0, None),
            sample("2024-05-11T00:00:00Z", 24, 9.0, None),
        ];
        let mut b = resample(&utc_days(), Aggregation::Distinct, &samples);
        assert!(b.exact);
        // Without the provider's total, two buckets only give a lower bound.
        assert!(!b.summary(Aggregation::Distinct).exact);
        b.total = Some(13.0);
        let s = b.summary(Aggregation::Distinct);
        assert_eq!(
            (s.total, s.min, s.max, s.exact),
            (Some(13.0), Some(7.0), Some(9.0), true)
        );
    }

    #[test]
    fn a_distinct_series_with_one_present_bucket_is_exact() {
        let b = resample(
            &utc_days(),
            Aggregation::Distinct,
            &[sample("2024-05-11T00:00:00Z", 24, 7.0, None)],
        );
        let s = b.summary(Aggregation::Distinct);
        assert_eq!((s.total, s.exact), (Some(7.0), true));
    }

    #[test]
    fn last_takes_the_latest_starting_sample_in_each_bucket_and_overall() {
        let samples = [
            sample("2024-05-10T20:00:00Z", 1, 120.0, None),
            sample("2024-05-10T03:00:00Z", 1, 100.0, None),
            sample("2024-05-11T08:00:00Z", 1, 130.0, None),
            sample("2024-05-10T10:00:00Z", 1, 110.0, None),
        ];
        let b = resample(&utc_days(), Aggregation::Last, &samples);
        assert_eq!(b.values, vec![Some(120.0), Some(130.0), None]);
        assert!(b.exact);
        let s = b.summary(Aggregation::Last);
        assert_eq!(
            (s.total, s.min, s.max),
            (Some(130.0), Some(120.0), Some(130.0))
        );
    }

    #[test]
    fn fill_zero_null_and_omit_shape_the_points() {
        let w = utc_days();
        let b = Bucketed {
            values: vec![Some(1.0), None, Some(3.0)],
            weights: vec![None; 3],
            exact: true,
            total: None,
        };
        let starts = w.bucket_starts();
        assert_eq!(
            b.points(&w, Fill::Zero),
            vec![
                (starts[0], Some(1.0)),
                (starts[1], Some(0.0)),
                (starts[2], Some(3.0))
            ]
        );
        assert_eq!(
            b.points(&w, Fill::Null),
            vec![
                (starts[0], Some(1.0)),
                (starts[1], None),
                (starts[2], Some(3.0))
            ]
        );
        assert_eq!(
            b.points(&w, Fill::Omit),
            vec![(starts[0], Some(1.0)), (starts[2], Some(3.0))]
        );
    }

    #[test]
    fn the_default_fill_is_zero_for_sums_and_null_otherwise() {
        assert_eq!(Fill::default_for(Aggregation::Sum), Fill::Zero);
        assert_eq!(Fill::default_for(Aggregation::Average), Fill::Null);
        assert_eq!(Fill::default_for(Aggregation::Distinct), Fill::Null);
        assert_eq!(Fill::default_for(Aggregation::Last), Fill::Null);
    }

    #[test]
    fn an_empty_series_sums_to_zero_and_has_no_average() {
        let b = Bucketed::empty(&utc_days());
        assert_eq!(b.values, vec![None; 3]);
        assert!(b.exact);
        let sum = b.summary(Aggregation::Sum);
        assert_eq!((sum.total, sum.min, sum.max), (Some(0.0), None, None));
        assert_eq!(b.summary(Aggregation::Average).total, None);
        assert_eq!(b.summary(Aggregation::Distinct).total, None);
        assert_eq!(b.summary(Aggregation::Last).total, None);
    }

    #[test]
    fn combine_adds_bucket_by_bucket_and_a_missing_part_is_not_a_zero() {
        let a = Bucketed {
            values: vec![Some(1.0), None, None],
            weights: vec![None; 3],
            exact: true,
            total: Some(1.0),
        };
        let b = Bucketed {
            values: vec![Some(2.0), Some(5.0), None],
            weights: vec![None; 3],
            exact: false,
            total: None,
        };
        let c = combine(&[a.clone(), b]);
        assert_eq!(c.values, vec![Some(3.0), Some(5.0), None]);
        assert!(!c.exact);
        // One part has no total, so the combined total is unknown.
        assert_eq!(c.total, None);
        let both = combine(&[a.clone(), a]);
        assert_eq!(both.total, Some(2.0));
        assert!(both.exact);
        let none = combine::<Bucketed>(&[]);
        assert!(none.values.is_empty());
        assert_eq!(none.total, None);
    }

    #[test]
    fn change_is_relative_to_the_previous_total() {
        assert_eq!(change(Some(150.0), Some(100.0)), Some(0.5));
        assert_eq!(change(Some(50.0), Some(100.0)), Some(-0.5));
        assert_eq!(change(Some(50.0), Some(0.0)), None);
        assert_eq!(change(None, Some(100.0)), None);
        assert_eq!(change(Some(1.0), None), None);
    }
}
