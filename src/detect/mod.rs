//! Per-source anomaly detection. (in progress)
