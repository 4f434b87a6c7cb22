//! culprit's readers: every format culprit accepts turned into its model types, in a crate that
//! builds without LanceDB or libtorch so that the fuzzer can build it quickly (`make fuzz`).
//!
//! - [`model`]: the types every stage shares (series, logs, spans, changes, alerts, incidents);
//! - [`ingest`]: bundle directories and telemetry files;
//! - [`otlp`]: OTLP/HTTP export requests (protobuf and JSON), as `culprit serve` receives them;
//! - [`alerts`]: Alertmanager's webhook and the generic alert;
//! - [`config`]: `culprit.toml`, the service's configuration;
//! - [`table`]: the drill-down's tables (CSV, CSV.gz, Parquet);
//! - [`fuzz`]: the fuzz targets' bodies, shared with the corpus replay test.
//!
//! The main crate re-exports each module under its old path (`culprit::model`, `culprit::ingest`,
//! `culprit::serve::otlp`, `culprit::serve::alerts`, `culprit::drilldown::table`, `culprit::serve::config`).

pub mod alerts;
pub mod config;
pub mod fuzz;
pub mod ingest;
pub mod model;
pub mod otlp;
pub mod table;
