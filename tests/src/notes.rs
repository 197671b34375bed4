//! The notes server of the examples crate, which the tests run behind `rmcp-authz`.

pub use rmcp_authz_examples::notes::*;
