//! The process's memory: the allocator, and what it holds.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc, asked for plain blocks wherever a plain block is aligned enough.
///
/// Request handling allocates many small short-lived buffers, where mimalloc is markedly
/// faster than the system allocator. It is built without transparent huge pages
/// (`no_thp`): zeroing 2 MB pages on first touch stalled requests and doubled RSS.
///
/// Every block mimalloc hands out is aligned to 8 bytes, and to 16 when its size is a
/// multiple of 16 (its size classes are multiples of 16 above 16 bytes, and a page's
/// first block is 16-aligned). So a layout whose size is a multiple of an alignment of
/// at most 16 (every Rust type's is) gets a plain block of its size class. Only larger
/// alignments go through the aligned entry points. Those do not take the size class
/// into account for alignments it already meets: whenever the class's current page has
/// no free block at hand they over-allocate by `align - 1`, so a 96-byte value lands in
/// a 112-byte block and an 80-byte one in 96 (every compiled ruleset lost some 20% that
/// way).
pub struct Allocator;

/// The alignment of every block of a size that is a multiple of it (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

#[inline(always)]
fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && size & (align - 1) == 0
}

/// A block for `layout`: from `plain` where a plain block is aligned enough, otherwise
/// from `aligned`.
///
/// # Safety
/// `layout` has a non-zero size (as `GlobalAlloc::alloc` requires).
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn block(
    layout: Layout,
    plain_block: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned_block: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    let (size, align) = (layout.size(), layout.align());
    let p = if plain(size, align) {
        unsafe { plain_block(size) }
    } else {
        unsafe { aligned_block(size, align) }
    };
    p.cast()
}

// SAFETY: every pointer passed to mimalloc came from mimalloc; the plain entry points
// are used only where the block's alignment is at least the layout's (see above), and
// `realloc` checks the new size the same way.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { block(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { block(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = if plain(new_size, layout.align()) {
            unsafe { mi::mi_realloc(ptr.cast::<c_void>(), new_size) }
        } else {
            unsafe { mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()) }
        };
        p.cast()
    }
}

/// Returns the memory freed so far to the operating system.
///
/// The allocator ([`Allocator`]) keeps freed pages for a while before it gives them
/// back (mimalloc v3: ten seconds in its arenas), and only does so when a later
/// allocation or free comes along. A
/// start reads and compiles every ruleset and frees what that took; an idle server
/// would then hold those pages indefinitely. Called once that work is done.
///
/// SQLite allocates with the C library's `malloc`, which keeps what a closed
/// connection freed (its page cache, up to 2 MB) in the arena of the thread that ran
/// it; `malloc_trim` hands the free pages of every arena back.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointer and may be called from any thread at any
    // time; it only walks the allocator's own structures.
    unsafe { mi::mi_collect(true) }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's `malloc_trim` takes no pointer and locks each arena itself.
        unsafe { malloc_trim(0) };
    }
}

/// Set by the warm-up once every ruleset is compiled.
static WARMED_UP: tokio::sync::SetOnce<()> = tokio::sync::SetOnce::const_new();

/// Marks the warm-up done: hands back what the warm-up's thread freed and lets
/// [`after_warm_up`] run.
pub fn warm_up_done() {
    release_free_memory();
    let _ = WARMED_UP.set(());
}

/// Waits for the warm-up, then returns the calling thread's free memory. mimalloc
/// gives a thread's emptied pages back only when that thread collects, and the thread
/// that ran the start then sits idle in the runtime, driving the server.
pub async fn after_warm_up() {
    WARMED_UP.wait().await;
    release_free_memory();
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    fn usable(p: *mut u8) -> usize {
        // SAFETY: `p` is a live block from mimalloc.
        unsafe { mi::mi_usable_size(p.cast::<c_void>()) }
    }

    /// Every size up to 3 KiB at every alignment up to 4 KiB, 40 blocks each (past the
    /// first free blocks of a fresh page): each block is aligned and holds its size, and
    /// a layout of a Rust type's shape gets its own size class, not a larger one.
    #[test]
    fn blocks_are_aligned_and_of_their_size_class() {
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in 1..=3072usize {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                let blocks: Vec<*mut u8> = (0..40)
                    .map(|i| {
                        // SAFETY: the layout's size is not zero.
                        let p = unsafe {
                            if i % 2 == 0 {
                                Allocator.alloc(layout)
                            } else {
                                Allocator.alloc_zeroed(layout)
                            }
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        assert!(usable(p) >= size);
                        if align <= 16 && size % align == 0 {
                            // SAFETY: a pure query.
                            let class = unsafe { mi::mi_good_size(size) };
                            assert_eq!(usable(p), class, "size {size} align {align}");
                        }
                        p
                    })
                    .collect();
                for p in blocks {
                    // SAFETY: allocated above with this layout, freed once.
                    unsafe { Allocator.dealloc(p, layout) };
                }
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_and_realloc_keeps_the_contents_and_alignment() {
        for align in [8usize, 16, 64] {
            let Ok(layout) = Layout::from_size_align(align * 3, align) else {
                unreachable!("a power of two and a multiple of it make a layout");
            };
            // SAFETY: non-zero size; every pointer below is live when used and freed once.
            unsafe {
                let p = Allocator.alloc_zeroed(layout);
                assert!(
                    std::slice::from_raw_parts(p, layout.size())
                        .iter()
                        .all(|b| *b == 0)
                );
                for i in 0..layout.size() {
                    *p.add(i) = i as u8;
                }
                let grown = Allocator.realloc(p, layout, align * 40);
                assert_eq!(grown as usize % align, 0);
                let shrunk = Allocator.realloc(
                    grown,
                    Layout::from_size_align_unchecked(align * 40, align),
                    align * 2,
                );
                assert_eq!(shrunk as usize % align, 0);
                for i in 0..align * 2 {
                    assert_eq!(*shrunk.add(i), i as u8);
                }
                Allocator.dealloc(shrunk, Layout::from_size_align_unchecked(align * 2, align));
            }
        }
    }
}
