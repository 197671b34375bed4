//! Runnable examples for `rmcp-authz`; each file in this directory is one example, and
//! opens with the command that runs it.

#[cfg(feature = "cedar")]
pub mod folder_notes;
pub mod notes;
pub mod report;
