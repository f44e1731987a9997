//! The process's memory: the allocator, and what it holds.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

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

/// A block for `layout` from `heap`, zeroed when `zeroed`.
///
/// # Safety
/// `layout` has a non-zero size and `heap` is a live heap.
#[allow(unsafe_code)]
unsafe fn heap_block(heap: *mut mi::mi_heap_t, layout: Layout, zeroed: bool) -> *mut u8 {
    let (size, align) = (layout.size(), layout.align());
    let p = unsafe {
        match (plain(size, align), zeroed) {
            (true, false) => mi::mi_heap_malloc(heap, size),
            (true, true) => mi::mi_heap_zalloc(heap, size),
            (false, false) => mi::mi_heap_malloc_aligned(heap, size, align),
            (false, true) => mi::mi_heap_zalloc_aligned(heap, size, align),
        }
    };
    p.cast()
}

// SAFETY: every pointer passed to mimalloc came from mimalloc; the plain entry points
// are used only where the block's alignment is at least the layout's (see above), and
// `realloc` checks the new size the same way. The import heap is used only between
// the two loads of `with_import_heap`, which its deletion waits out.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !IMPORT_HEAP.load(Ordering::Relaxed).is_null() {
            return with_import_heap(|heap| match heap {
                Some(heap) => unsafe { heap_block(heap, layout, false) },
                None => unsafe { block(layout, mi::mi_malloc, mi::mi_malloc_aligned) },
            });
        }
        unsafe { block(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !IMPORT_HEAP.load(Ordering::Relaxed).is_null() {
            return with_import_heap(|heap| match heap {
                Some(heap) => unsafe { heap_block(heap, layout, true) },
                None => unsafe { block(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) },
            });
        }
        unsafe { block(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (p, align) = (ptr.cast::<c_void>(), layout.align());
        if !IMPORT_HEAP.load(Ordering::Relaxed).is_null() {
            return with_import_heap(|heap| {
                let moved = match heap {
                    Some(heap) if plain(new_size, align) => unsafe {
                        mi::mi_heap_realloc(heap, p, new_size)
                    },
                    Some(heap) => unsafe { mi::mi_heap_realloc_aligned(heap, p, new_size, align) },
                    None if plain(new_size, align) => unsafe { mi::mi_realloc(p, new_size) },
                    None => unsafe { mi::mi_realloc_aligned(p, new_size, align) },
                };
                moved.cast()
            });
        }
        let moved = if plain(new_size, align) {
            unsafe { mi::mi_realloc(p, new_size) }
        } else {
            unsafe { mi::mi_realloc_aligned(p, new_size, align) }
        };
        moved.cast()
    }
}

/// The heap every allocation goes to while a start imports the rules directory (null
/// otherwise); see [`ImportHeap`].
static IMPORT_HEAP: AtomicPtr<mi::mi_heap_t> = AtomicPtr::new(std::ptr::null_mut());
/// Allocations in [`IMPORT_HEAP`] under way: it is deleted only once there are none.
static IN_IMPORT_HEAP: AtomicUsize = AtomicUsize::new(0);

/// `f` with the import heap, or `None` once the import is over. The heap cannot be
/// deleted while `f` runs: [`ImportHeap::stop`] clears it and then waits for the count,
/// and the count is raised before the heap is read, so a thread that still saw the
/// heap set either finishes before the deletion or reads it cleared here.
#[cold]
#[inline(never)]
fn with_import_heap<R>(f: impl FnOnce(Option<*mut mi::mi_heap_t>) -> R) -> R {
    IN_IMPORT_HEAP.fetch_add(1, Ordering::SeqCst);
    let heap = IMPORT_HEAP.load(Ordering::SeqCst);
    let done = f((!heap.is_null()).then_some(heap));
    IN_IMPORT_HEAP.fetch_sub(1, Ordering::Release);
    done
}

/// A heap of its own for a start's import of the rules directory.
///
/// A first start reads, parses and compiles every file on every core and writes them
/// all to the log in one transaction: at its peak it holds twice what the server holds
/// afterwards, spread over the pages of every thread that took part. Whatever little
/// outlives it (a map grown, a cached statement) would keep most of those pages
/// resident, holding the process 6 MB above a restarted one's. In a heap of its own,
/// the import's pages are all freed with it; what outlives it moves to the main heap
/// when it is deleted.
pub struct ImportHeap {
    heap: AtomicPtr<mi::mi_heap_t>,
}

impl ImportHeap {
    /// Sends every allocation, from any thread, to a new heap until [`ImportHeap::stop`].
    /// `None` when [`Allocator`] is not the process's allocator (as in the library's
    /// tests), another import has one, or none can be made.
    #[allow(unsafe_code)]
    pub fn start() -> Option<ImportHeap> {
        let probe = Box::new(0u64);
        // SAFETY: a query on any pointer.
        let ours = unsafe { mi::mi_is_in_heap_region(std::ptr::from_ref(&*probe).cast()) };
        if ours { ImportHeap::open() } else { None }
    }

    /// [`ImportHeap::start`] whichever allocator the process uses.
    #[allow(unsafe_code)]
    fn open() -> Option<ImportHeap> {
        // SAFETY: takes no pointer; a null result is handled.
        let heap = unsafe { mi::mi_heap_new() };
        if heap.is_null() {
            return None;
        }
        if IMPORT_HEAP
            .compare_exchange(
                std::ptr::null_mut(),
                heap,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_err()
        {
            // SAFETY: made above and never published: no block was allocated in it.
            unsafe { mi::mi_heap_delete(heap) };
            return None;
        }
        Some(ImportHeap {
            heap: AtomicPtr::new(heap),
        })
    }

    /// Allocations go to the main heap again (blocks of the import heap stay valid).
    pub fn stop(&self) {
        let heap = self.heap.load(Ordering::SeqCst);
        if IMPORT_HEAP
            .compare_exchange(
                heap,
                std::ptr::null_mut(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            // An allocation takes microseconds; yielding lets one whose thread was
            // preempted finish.
            while IN_IMPORT_HEAP.load(Ordering::SeqCst) != 0 {
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for ImportHeap {
    /// Stops the heap and deletes it: its free pages go back to the arena, and the pages
    /// of blocks still in use move to the main heap.
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        self.stop();
        let heap = self.heap.swap(std::ptr::null_mut(), Ordering::SeqCst);
        if !heap.is_null() {
            // SAFETY: no allocation can reach the heap any more (`stop`), and mimalloc
            // lets a heap be deleted from any thread, moving its live blocks.
            unsafe { mi::mi_heap_delete(heap) };
        }
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

    unsafe extern "C" {
        fn mi_heap_main() -> *mut mi::mi_heap_t;
        fn mi_heap_contains(heap: *const mi::mi_heap_t, p: *const c_void) -> bool;
    }

    fn in_main_heap(p: *mut u8) -> bool {
        // SAFETY: a query on a live block.
        unsafe { mi_heap_contains(mi_heap_main(), p.cast()) }
    }

    /// While an import heap is up, every allocation (plain, zeroed, aligned, grown)
    /// goes to it; after `stop`, to the main heap again; and its blocks outlive its
    /// deletion, moved to the main heap with their contents.
    #[test]
    fn the_import_heap_takes_every_allocation_until_stopped_and_its_blocks_outlive_it() {
        // The test binary's allocator is not `Allocator`: a service started by
        // another test takes no import heap, and this one is opened directly.
        assert!(ImportHeap::start().is_none());
        let Some(heap) = ImportHeap::open() else {
            unreachable!("no other import heap is up in this test binary");
        };
        assert!(ImportHeap::open().is_none(), "one import heap at a time");
        let small = Layout::from_size_align(48, 8).unwrap_or_else(|_| unreachable!());
        let wide = Layout::from_size_align(256, 64).unwrap_or_else(|_| unreachable!());
        // SAFETY: non-zero sizes; every block is written within its size and freed once.
        unsafe {
            let a = Allocator.alloc(small);
            let b = Allocator.alloc_zeroed(wide);
            assert_eq!(b as usize % 64, 0);
            assert!(std::slice::from_raw_parts(b, 256).iter().all(|x| *x == 0));
            a.write_bytes(7, 48);
            let a = Allocator.realloc(a, small, 4096);
            for p in [a, b] {
                assert!(!in_main_heap(p), "allocated while the import heap is up");
            }
            heap.stop();
            let c = Allocator.alloc(small);
            assert!(in_main_heap(c), "allocated after stop");
            drop(heap);
            assert!(in_main_heap(a) && in_main_heap(b), "moved to the main heap");
            assert!(std::slice::from_raw_parts(a, 48).iter().all(|x| *x == 7));
            Allocator.dealloc(a, Layout::from_size_align_unchecked(4096, 8));
            Allocator.dealloc(b, wide);
            Allocator.dealloc(c, small);
        }
        let again = ImportHeap::open();
        assert!(again.is_some(), "a new import heap once the last is gone");
    }

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
