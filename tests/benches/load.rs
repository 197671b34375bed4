//! Placeholder, replaced by the load harness.
fn main() {}
