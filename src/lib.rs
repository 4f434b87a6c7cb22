//! culprit: root-cause investigation for production incidents.
//!
//! Data flows one way: ingest → detect → correlate → graph → rank → investigate → report.
//! `pipeline::run` assembles the stages (the one place that does); `eval` scores it; `simulate`
//! makes labelled incidents.
//! See ARCHITECTURE.md for the map.

pub mod baselines;
pub mod bench;
pub mod calibrate;
pub mod correlate;
pub mod detect;
pub mod drilldown;
pub mod embed;
pub mod eval;
pub mod graph;
pub use culprit_readers::ingest;
pub mod investigate;
pub mod kb;
pub mod llm;
pub use culprit_readers::model;
pub mod pipeline;
pub mod plots;
pub mod rank;
pub mod redact;
pub mod report;
pub mod rerank;
pub mod rng;
pub mod serve;
pub mod simulate;
pub mod store;
pub mod triage;
