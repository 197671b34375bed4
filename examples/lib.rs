//! Runnable examples for `rmcp-authz`; each file in this directory is one example, and
//! opens with the command that runs it.

pub mod notes;
pub mod report;
