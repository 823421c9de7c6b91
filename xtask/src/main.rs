//! Build chores for utt: `cargo xtask <command>`.
fn main() {}
