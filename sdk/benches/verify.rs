//! Placeholder, replaced by the verify benchmark.
fn main() {}
