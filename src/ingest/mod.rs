//! Readers for incident bundles and telemetry formats. (in progress)
