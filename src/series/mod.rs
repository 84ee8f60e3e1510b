//! The time-series engine: windows, calendar buckets, zones and resampling. No I/O.
//!
//! Every statistic chatstats serves is a series over a [`Window`]: a requested `[from, to)`
//! aligned outward to [`Granularity`] buckets in a [`Zone`] (DST-correct calendar buckets,
//! SPEC §3). Provider clients turn their rows into [`Sample`]s; [`resample()`] puts them on the
//! window's buckets under the series' [`Aggregation`] and says whether that was exact;
//! [`combine`] adds providers together; [`Bucketed::summary`] and [`Bucketed::points`] give
//! what the GraphQL `TimeSeries` shows.
//!
//! - [`zone`]: parsing zones, local time, DST gaps and overlaps.
//! - [`granularity`]: bucket boundaries (`floor`, `next`, `prev`).
//! - [`window`]: validated, aligned windows and bucket lookup.
//! - [`resample`](mod@resample): samples → buckets, summaries, points, combining.

pub mod granularity;
pub mod resample;
pub mod window;
pub mod zone;

pub use granularity::Granularity;
pub use resample::{change, combine, resample, Aggregation, Bucketed, Fill, Sample, Summary};
pub use window::{Window, WindowError, MAX_BUCKETS};
pub use zone::{Zone, ZoneError};
