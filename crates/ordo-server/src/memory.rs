//! The process's memory, as the allocator holds it.

/// Returns the memory freed so far to the operating system.
///
/// The allocator (mimalloc, see `main.rs`) keeps freed pages for a second before it
/// gives them back, and only does so when a later allocation or free comes along. A
/// start reads and compiles every ruleset and frees what that took; an idle server
/// would then hold those pages indefinitely. Called once that work is done.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointer and may be called from any thread at any
    // time; it only walks the allocator's own structures.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
