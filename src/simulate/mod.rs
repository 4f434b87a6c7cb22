//! Fault-injection simulator. (in progress)
