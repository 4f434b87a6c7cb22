//! The investigation after the static triage (issue 5, in progress): the hypothesis ledger today;
//! typed tools, the ReAct loop and its policies to come.

pub mod ledger;
pub mod tools;
