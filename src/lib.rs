//! culprit: root-cause investigation for production incidents.
//!
//! Data flows one way: ingest → detect → correlate → graph → rank → (investigate) → report.
//! See ARCHITECTURE.md for the map.

pub mod adapters;
pub mod detect;
pub mod ingest;
pub mod model;
pub mod simulate;
