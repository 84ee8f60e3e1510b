//! The `Window` input and the enums that describe how a series is cut and filled.

use async_graphql::{Enum, InputObject};

use crate::error::ApiError;
use crate::graphql::scalars::{Instant, TimeZone};
use crate::series::{self, Zone};

/// Calendar bucket sizes. Buckets follow the window's time zone, including DST changes.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "Granularity", remote = "crate::series::Granularity")]
pub enum Granularity {
    /// One hour of real time.
    Hour,
    /// A local calendar day (23 or 25 hours on DST change days).
    Day,
    /// A week starting Monday 00:00 local time (ISO 8601).
    Week,
    /// A local calendar month.
    Month,
    /// A local calendar year.
    Year,
}

/// How a series' buckets combine into coarser buckets and into `total`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "Aggregation", remote = "crate::series::Aggregation")]
pub enum Aggregation {
    /// Values add up.
    Sum,
    /// A mean, weighted by the underlying counts where the provider gives them.
    Average,
    /// A count of distinct things (e.g. active users): never summed across buckets.
    Distinct,
    /// The value at the end of the bucket (e.g. total users).
    Last,
}

/// How buckets without data appear in `points`.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "Fill", remote = "crate::series::Fill")]
pub enum Fill {
    /// As 0.
    Zero,
    /// As a point with a null value.
    Null,
    /// Left out.
    Omit,
}

/// A slice of time: [from, to), cut into buckets of `granularity` in `timeZone`. Both ends are
/// aligned outward to bucket boundaries; `TimeSeries.window` says what was applied. At most
/// 10,000 buckets per series.
#[derive(InputObject, Clone, Debug)]
#[graphql(name = "Window")]
pub struct WindowInput {
    /// Start of the window (inclusive); moved back to the start of its bucket.
    pub from: Instant,
    /// End of the window (exclusive); moved forward to the next bucket boundary.
    pub to: Instant,
    /// Bucket size. Default: DAY.
    #[graphql(default_with = "Granularity::Day")]
    pub granularity: Granularity,
    /// Zone of the buckets. Default: the workspace's time zone.
    pub time_zone: Option<TimeZone>,
}

impl WindowInput {
    /// The aligned engine window, or `BAD_USER_INPUT` naming the argument.
    pub fn resolve(&self, default_zone: Zone) -> Result<series::Window, ApiError> {
        let zone = self.time_zone.map(|z| z.0).unwrap_or(default_zone);
        series::Window::new(self.from.0, self.to.0, self.granularity.into(), zone)
            .map_err(|e| ApiError::bad_input(format!("argument `window`: {e}")))
    }
}
