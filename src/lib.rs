//! utt, the universal tracking tag: a pure core (`core`) that decides everything and a thin
//! browser shell (`web`, wasm32 only) that translates between it and the page.
//!
//! With the `tag` feature (the deployable wasm) the crate is `no_std` with `alloc`, so the tag
//! carries no `std` panic machinery and no `core::fmt`; see ARCHITECTURE.md, "Where the bytes
//! go". Every other build (tests, the collector) links `std` as usual, so the code names only
//! `core::` and `alloc::` paths and the tag build proves it.
#![cfg_attr(feature = "tag", no_std)]

extern crate alloc;

pub mod core;
