//! The utt collector (being built: see issue 3).
fn main() {}
