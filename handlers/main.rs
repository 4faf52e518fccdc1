//! Binary entry point (placeholder).
fn main() {}
