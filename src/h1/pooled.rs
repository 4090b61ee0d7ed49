//! Per-request allocations reused within a worker: a request's state (the exchange's
//! future, several KiB) and its answer's body state are taken from a thread-local free
//! list of blocks and go back to it, instead of a `malloc` and a `free` each per
//! request.
//!
//! Besides the CPU, this keeps short-lived request blocks from interleaving in the heap
//! with long-lived connection state: with plain boxes, the allocator's caches split
//! freed request blocks for new connections and `bench/idle-mem.sh` read about 120 more
//! bytes per idle connection (1,058 against 935; with glibc's caches turned off, both
//! read 972).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Blocks kept per worker at most, all sizes together: about the requests a worker has
/// in flight at once under load. More are freed.
const KEEP: usize = 128;

/// The free blocks, by layout (a few: one per kind of pooled value), most recently
/// given back last; freed when the thread ends.
struct FreeList {
    classes: Vec<(Layout, Vec<NonNull<u8>>)>,
    /// Blocks in all classes.
    count: usize,
}

impl Drop for FreeList {
    fn drop(&mut self) {
        for (layout, blocks) in self.classes.drain(..) {
            for p in blocks {
                // SAFETY: allocated by `take` with this layout and not in use.
                unsafe { dealloc(p.as_ptr(), layout) };
            }
        }
    }
}

thread_local! {
    static FREE: RefCell<FreeList> = const {
        RefCell::new(FreeList {
            classes: Vec::new(),
            count: 0,
        })
    };
}

/// A block for `layout` (non-zero size): the last one of that layout given back (the
/// likeliest still in cache), or a new one.
fn take(layout: Layout) -> NonNull<u8> {
    let reused = FREE
        .try_with(|f| {
            let mut f = f.borrow_mut();
            let p = f
                .classes
                .iter_mut()
                .find(|(l, _)| *l == layout)
                .and_then(|(_, blocks)| blocks.pop())?;
            f.count -= 1;
            Some(p)
        })
        .ok()
        .flatten();
    if let Some(p) = reused {
        return p;
    }
    // SAFETY: `layout` has a non-zero size.
    NonNull::new(unsafe { alloc(layout) }).unwrap_or_else(|| handle_alloc_error(layout))
}

/// Gives a block back (freed when the list is full, or the thread is ending).
fn give(layout: Layout, p: NonNull<u8>) {
    let kept = FREE
        .try_with(|f| {
            let mut f = f.borrow_mut();
            if f.count >= KEEP {
                return false;
            }
            f.count += 1;
            match f.classes.iter_mut().find(|(l, _)| *l == layout) {
                Some((_, blocks)) => blocks.push(p),
                None => f.classes.push((layout, vec![p])),
            }
            true
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: allocated by `take` with this layout, and no longer in use.
        unsafe { dealloc(p.as_ptr(), layout) };
    }
}

/// A `T` in a block from the worker's free list (a `Box` whose memory is reused); a
/// future in it is polled in place, never moved.
pub struct Pooled<T> {
    ptr: NonNull<T>,
}

// SAFETY: `Pooled<T>` owns its `T` like a `Box<T>`; the block itself is plain memory of
// the global allocator, which any thread may give back.
unsafe impl<T: Send> Send for Pooled<T> {}
// SAFETY: as above; shared access only reads the `T`.
unsafe impl<T: Sync> Sync for Pooled<T> {}

impl<T> Pooled<T> {
    /// `value` in a pooled block.
    pub fn new(value: T) -> Self {
        Self::with(|| value)
    }

    /// The value `make` returns, written straight into its block (a state of several
    /// KiB is not built on the stack and copied over).
    pub fn with(make: impl FnOnce() -> T) -> Self {
        let layout = Layout::new::<T>();
        let ptr = if layout.size() == 0 {
            NonNull::dangling()
        } else {
            take(layout).cast::<T>()
        };
        // SAFETY: `ptr` is valid for a write of `T` and properly aligned.
        unsafe { ptr.as_ptr().write(make()) };
        Pooled { ptr }
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        let layout = Layout::new::<T>();
        // SAFETY: the value was written by `with` and is dropped once, here.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        if layout.size() != 0 {
            give(layout, self.ptr.cast());
        }
    }
}

impl<T> std::ops::Deref for Pooled<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: valid and initialised for the life of `self`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> std::ops::DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: valid, initialised, and borrowed uniquely through `self`.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl<F: Future> Future for Pooled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the future stays in its block until it is dropped in place: a
        // `Pooled` moves only its pointer, and gives no way to move the value out.
        unsafe { Pin::new_unchecked(&mut **self.get_mut()) }.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_reused_and_values_dropped() {
        use std::rc::Rc;
        let marker = Rc::new(());
        let a = Pooled::new((Rc::clone(&marker), [0u8; 100]));
        let first = a.ptr.cast::<u8>();
        drop(a);
        assert_eq!(Rc::strong_count(&marker), 1, "the value was dropped");
        let b = Pooled::new((Rc::clone(&marker), [1u8; 100]));
        assert_eq!(b.ptr.cast::<u8>(), first, "the block was reused");
        assert_eq!(b.1[99], 1);
        let c = Pooled::new(7u64);
        assert_ne!(
            c.ptr.cast::<u8>(),
            first,
            "another layout gets another block"
        );
        let z = Pooled::new(());
        drop((b, c, z));
    }

    #[test]
    fn futures_run_in_place() {
        let f = Pooled::with(|| async { 40 + 2 });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(f), 42);
    }
}
