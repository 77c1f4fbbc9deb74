//! Migration planner benchmarks (filled in below).
fn main() {}
