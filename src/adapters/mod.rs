//! Adapters for public labelled datasets. (in progress)
