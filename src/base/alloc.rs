//! A per-thread cache of small memory blocks in front of the system allocator.
//!
//! Why: the static binary links musl, whose allocator serialises every `malloc` and `free`
//! behind one process-wide lock and hands memory back to the kernel eagerly. A proxied request
//! makes a few hundred small allocations (headers, JSON values, buffers) on worker and
//! connection threads at once, and `make bench` measured musl's allocator at about 2.4× the CPU
//! per request of glibc's, most of it lock contention. Recycling small blocks per thread takes
//! almost all of those calls off the lock; nothing else changes.
//!
//! How: blocks of 16 to 2048 bytes are rounded up to a power of two and, when freed, kept on a
//! short per-thread list for that size (at most `KEEP_BYTES` per size, so a thread never holds
//! more than 64 KiB). Larger or over-aligned requests go straight to the system
//! allocator. A thread's lists are returned to the system allocator when the thread ends
//! (a pthread key destructor: Rust's own thread-local destructors may allocate, which an
//! allocator must not depend on). Every cached block was obtained from the system allocator
//! with the layout of its size class, so any block of a class can serve any request of it.
//!
//! Large blocks, with glibc: a request of a coding agent is its whole history, megabytes, and
//! the buffers that hold it are freed when the request ends. glibc serves a block that large
//! with `mmap` at first, but after the first such block is freed it raises its `mmap`
//! threshold to that block's size (up to 32 MiB), so from then on the buffers come from the
//! heap of the thread's arena; and each worker thread has an arena of its own (up to 8 per
//! core), which keeps what it freed. 16 workers taking turns at 5 MB requests held 685 MB.
//! Setting the threshold explicitly turns that adjustment off ([`settle_system_allocator`]):
//! a block of 128 KiB or more is mapped for itself and unmapped when freed, as musl does
//! always. What a request frees below that size stays in its arena's heap, broken up by what
//! is still in use; two arenas (for 2 to 80 workers) bound that, and cost little contention
//! since the blocks small enough to be frequent never reach glibc (the lists above).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Size classes: 16, 32, …, 2048 bytes.
const CLASSES: usize = 8;
const SMALLEST: usize = 16;
const LARGEST: usize = SMALLEST << (CLASSES - 1);
/// Alignment every class block has (what the system allocator gives a 16-byte block anyway).
const ALIGN: usize = 16;
/// Bytes kept per class per thread: 512 blocks of 16 bytes, 4 of 2048.
const KEEP_BYTES: usize = 8 * 1024;

/// The global allocator of the `claudegate` binary.
pub struct ThreadCache;

struct Lists {
    heads: [*mut Free; CLASSES],
    counts: [u32; CLASSES],
    state: State,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    /// No block cached yet; the exit hook is not registered.
    Fresh,
    Active,
    /// The thread is ending and its lists were flushed: use the system allocator directly.
    Gone,
}

/// A cached block's first bytes point to the next cached block of its class.
struct Free {
    next: *mut Free,
}

struct Local(UnsafeCell<Lists>);

// SAFETY: each thread only ever touches its own `LISTS` (it is thread-local).
unsafe impl Sync for Local {}

thread_local! {
    // `const` and without `Drop`: no lazy initialisation and no destructor registration,
    // so it is usable at any point of a thread's life, including its teardown.
    static LISTS: Local = const {
        Local(UnsafeCell::new(Lists {
            heads: [ptr::null_mut(); CLASSES],
            counts: [0; CLASSES],
            state: State::Fresh,
        }))
    };
}

fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > LARGEST || layout.align() > ALIGN {
        return None;
    }
    let size = layout.size().max(SMALLEST).next_power_of_two();
    Some(size.trailing_zeros() as usize - SMALLEST.trailing_zeros() as usize)
}

fn class_layout(class: usize) -> Layout {
    // SAFETY: a power of two between 16 and 2048 with alignment 16 is always a valid layout.
    unsafe { Layout::from_size_align_unchecked(SMALLEST << class, ALIGN) }
}

/// Runs `f` on this thread's lists, or returns None once the thread is past using them.
fn with_lists<R>(f: impl FnOnce(&mut Lists) -> R) -> Option<R> {
    LISTS
        .try_with(|local| {
            // SAFETY: only this thread reaches its lists, and `f` never re-enters the
            // allocator while holding the reference (it only moves list pointers).
            let lists = unsafe { &mut *local.0.get() };
            (lists.state != State::Gone).then(|| f(lists))
        })
        .ok()
        .flatten()
}

unsafe impl GlobalAlloc for ThreadCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            settle_system_allocator();
            return System.alloc(layout);
        };
        let cached = with_lists(|l| {
            let head = l.heads[class];
            if head.is_null() {
                return ptr::null_mut();
            }
            // SAFETY: every pointer on a list is a free block of this class we put there.
            l.heads[class] = unsafe { (*head).next };
            l.counts[class] -= 1;
            head.cast::<u8>()
        });
        match cached {
            Some(p) if !p.is_null() => p,
            _ => {
                settle_system_allocator();
                System.alloc(class_layout(class))
            }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return System.dealloc(p, layout);
        };
        let kept = with_lists(|l| {
            if l.counts[class] as usize >= KEEP_BYTES >> (class + 4) {
                return false;
            }
            if l.state == State::Fresh {
                l.state = State::Active;
                register_exit_hook();
            }
            let block = p.cast::<Free>();
            // SAFETY: the block is at least 16 bytes, 16-aligned, and no longer in use.
            unsafe {
                block.write(Free {
                    next: l.heads[class],
                })
            };
            l.heads[class] = block;
            l.counts[class] += 1;
            true
        });
        if kept != Some(true) {
            System.dealloc(p, class_layout(class));
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // A large zeroed block (`vec![0; n]`) is `calloc`, whose fresh pages need no zeroing.
        if class_of(layout).is_none() {
            settle_system_allocator();
            return System.alloc_zeroed(layout);
        }
        let p = self.alloc(layout);
        if !p.is_null() {
            ptr::write_bytes(p, 0, layout.size());
        }
        p
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with this alignment is a valid layout.
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        match (class_of(layout), class_of(new_layout)) {
            (None, None) => System.realloc(p, layout, new_size),
            (Some(a), Some(b)) if a == b => p,
            _ => {
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    ptr::copy_nonoverlapping(p, new, layout.size().min(new_size));
                    self.dealloc(p, layout);
                }
                new
            }
        }
    }
}

// ---- glibc: memory freed goes back -------------------------------------------------------

/// Blocks at least this large are mapped for themselves (glibc's initial default, kept).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Arenas glibc may create (its default is 8 per core).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: i32 = 2;

/// Sets glibc's allocator up once, before the process's first allocation from it (see the
/// module docs): an explicit `mmap` threshold, and at most [`ARENA_MAX`] arenas. Called on
/// every path to the system allocator; after the first call it is a single load. Nothing to
/// do with musl, which maps large blocks for themselves always and has one heap.
#[inline]
fn settle_system_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::atomic::AtomicBool;
        static SET: AtomicBool = AtomicBool::new(false);
        if !SET.load(Ordering::Relaxed) {
            SET.store(true, Ordering::Relaxed);
            extern "C" {
                fn mallopt(param: i32, value: i32) -> i32;
            }
            /// glibc's `M_MMAP_THRESHOLD` and `M_ARENA_MAX` (malloc.h).
            const M_MMAP_THRESHOLD: i32 = -3;
            const M_ARENA_MAX: i32 = -8;
            // SAFETY: mallopt takes two integers and changes only the allocator's own
            // settings, under its own lock; it does not call back into this allocator. The
            // first allocation happens on the main thread before any other thread exists, so
            // this runs once in practice; a second run would set the same values. A refusal
            // (0) leaves glibc's defaults, which cost only memory.
            unsafe {
                mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
                mallopt(M_ARENA_MAX, ARENA_MAX);
            }
        }
    }
}

// ---- thread exit: hand the cached blocks back ----------------------------------------------

extern "C" {
    fn pthread_key_create(
        key: *mut u32,
        destructor: Option<unsafe extern "C" fn(*mut c_void)>,
    ) -> i32;
    fn pthread_setspecific(key: u32, value: *const c_void) -> i32;
}

/// The pthread key whose destructor flushes a thread's lists; `u32::MAX` until created.
static EXIT_KEY: AtomicU32 = AtomicU32::new(u32::MAX);

fn register_exit_hook() {
    let mut key = EXIT_KEY.load(Ordering::Acquire);
    if key == u32::MAX {
        let mut new = 0u32;
        // SAFETY: plain libc calls; neither allocates through this allocator.
        if unsafe { pthread_key_create(&mut new, Some(flush_on_exit)) } != 0 {
            return; // No hook: the lists of an ending thread are then simply not reused.
        }
        key = match EXIT_KEY.compare_exchange(u32::MAX, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => new,
            Err(existing) => existing, // Another thread won; its key serves everyone.
        };
    }
    // Any non-null value makes the destructor run at thread exit.
    // SAFETY: `key` is a created key.
    unsafe { pthread_setspecific(key, ptr::dangling::<c_void>()) };
}

unsafe extern "C" fn flush_on_exit(_: *mut c_void) {
    let blocks = with_lists(|l| {
        l.state = State::Gone;
        let heads = l.heads;
        l.heads = [ptr::null_mut(); CLASSES];
        l.counts = [0; CLASSES];
        heads
    });
    for (class, mut block) in blocks
        .unwrap_or([ptr::null_mut(); CLASSES])
        .into_iter()
        .enumerate()
    {
        while !block.is_null() {
            // SAFETY: these are the free blocks this thread cached, now owned by nobody else.
            let next = unsafe { (*block).next };
            unsafe { System.dealloc(block.cast(), class_layout(class)) };
            block = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(class_of(l(1, 1)), Some(0));
        assert_eq!(class_of(l(16, 8)), Some(0));
        assert_eq!(class_of(l(17, 8)), Some(1));
        assert_eq!(class_of(l(2048, 16)), Some(7));
        assert_eq!(class_of(l(2049, 8)), None);
        assert_eq!(class_of(l(64, 32)), None);
        assert_eq!(class_layout(7).size(), 2048);
    }

    #[test]
    fn blocks_are_reused_moved_between_threads_and_flushed_at_exit() {
        let a = ThreadCache;
        unsafe {
            let layout = Layout::from_size_align(100, 8).unwrap();
            let p = a.alloc(layout);
            p.write_bytes(0xab, 100);
            a.dealloc(p, layout);
            // The same class gets the cached block back.
            assert_eq!(a.alloc(Layout::from_size_align(120, 8).unwrap()), p);
            // Growing within the class keeps the block; leaving it copies the bytes.
            let q = a.realloc(p, Layout::from_size_align(120, 8).unwrap(), 128);
            assert_eq!(q, p);
            q.write_bytes(7, 128);
            let r = a.realloc(q, Layout::from_size_align(128, 8).unwrap(), 5000);
            assert_eq!(std::slice::from_raw_parts(r, 128), &[7u8; 128][..]);
            a.dealloc(r, Layout::from_size_align(5000, 8).unwrap());
            // A block freed on another thread is cached there and flushed when it ends.
            let s = a.alloc(layout) as usize;
            std::thread::spawn(move || {
                a_dealloc(s, layout);
                let counts = with_lists(|l| l.counts).unwrap();
                assert_eq!(counts[class_of(layout).unwrap()], 1);
            })
            .join()
            .unwrap();
        }
        fn a_dealloc(p: usize, layout: Layout) {
            unsafe { ThreadCache.dealloc(p as *mut u8, layout) }
        }
    }
}
