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
#[cfg(target_arch = "wasm32")]
pub mod web;

// The deployable tag: a small allocator (a free list, not dlmalloc's ~7 KB) and a panic
// handler that traps without formatting anything. The core is written not to panic; if it ever
// did, the loader catches the trap and the page goes on.
#[cfg(all(feature = "tag", target_arch = "wasm32"))]
#[global_allocator]
static ALLOC: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

#[cfg(all(feature = "tag", target_arch = "wasm32"))]
#[panic_handler]
fn panic(_: &::core::panic::PanicInfo) -> ! {
    ::core::arch::wasm32::unreachable()
}
