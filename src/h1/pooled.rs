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
//!
//! A future in a block is polled where it is: [`Pooled::with`] hands it out pinned, as
//! `Pin<Pooled<F>>`, the way `Box::pin` hands out a `Pin<Box<F>>`, and it is polled
//! through the standard `Future for Pin<P>` (a `Pooled` is not a future itself). Safe
//! code cannot then move it: reaching the value mutably through the `Pin` needs
//! `F: Unpin`, and the block is neither given back nor reused until the value has
//! been dropped in place. A `Pooled` made by [`Pooled::new`] is not pinned and derefs
//! mutably, for state that is not a future (an answer's body state); it cannot be
//! polled as a future unless its value is `Unpin`.
//!
//! Pinning costs nothing: a `Pin<Pooled<F>>` is the one pointer a `Pooled<F>` is, and
//! its block comes from the same free list.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::RefCell;
use std::pin::Pin;
use std::ptr::NonNull;

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

/// A `T` in a block from the worker's free list: a `Box` whose memory is reused. Like a
/// `Box`, it may be pinned ([`Pooled::with`]): the value never moves while the
/// `Pooled` lives, which only moves its pointer.
pub struct Pooled<T> {
    ptr: NonNull<T>,
}

// SAFETY: `Pooled<T>` owns its `T` like a `Box<T>`; the block itself is plain memory of
// the global allocator, which any thread may give back.
unsafe impl<T: Send> Send for Pooled<T> {}
// SAFETY: as above; a shared `Pooled<T>` lends only `&T` (through `Deref`), so sharing
// it across threads shares a `&T`, which `T: Sync` allows.
unsafe impl<T: Sync> Sync for Pooled<T> {}

impl<T> Pooled<T> {
    /// `value` in a pooled block.
    pub fn new(value: T) -> Self {
        Self::place(|| value)
    }

    /// The value `make` returns, written straight into its block (a state of several
    /// KiB is not built on the stack and copied over), and pinned there: for a future,
    /// which is then polled in place (see the module doc).
    ///
    /// A future that is not `Unpin` cannot be moved out of its block:
    ///
    /// ```compile_fail,E0596
    /// use ninefold::h1::pooled::Pooled;
    /// let make = || async {};
    /// let (mut a, mut b) = (Pooled::with(make), Pooled::with(make));
    /// std::mem::swap(&mut *a, &mut *b); // no `&mut` to a pinned `!Unpin` value
    /// ```
    ///
    /// while one that is `Unpin` may move, as pinning does not bind it:
    ///
    /// ```
    /// use ninefold::h1::pooled::Pooled;
    /// let make = || std::future::ready(());
    /// let (mut a, mut b) = (Pooled::with(make), Pooled::with(make));
    /// std::mem::swap(&mut *a, &mut *b);
    /// ```
    pub fn with(make: impl FnOnce() -> T) -> Pin<Self> {
        // SAFETY: the value stays at its address until it is dropped in place: the
        // `Pooled` is moved into the `Pin` at once, and a `Pin` lends the value mutably
        // (to move it) only when `T: Unpin`; `Deref` and `DerefMut` return the block's
        // address and move nothing; `Drop` drops the value in place before the block is
        // given back, and a leaked `Pooled` leaks its block (the pinning guarantee:
        // the memory is not reused before the value's `drop`).
        unsafe { Pin::new_unchecked(Self::place(make)) }
    }

    /// The value `make` returns, in a new block.
    fn place(make: impl FnOnce() -> T) -> Self {
        let layout = Layout::new::<T>();
        let ptr = if layout.size() == 0 {
            NonNull::dangling()
        } else {
            take(layout).cast::<T>()
        };
        // SAFETY: `ptr` is valid for a write of `T` and aligned for it: a block `take`
        // allocated (or was given back) with `T`'s own layout, or, for a zero-sized `T`,
        // a dangling aligned pointer, which a write of no bytes may use. Nothing else
        // holds the block (a block in the free list belongs to no `Pooled`). Should
        // `make` panic, nothing was written and the block is leaked, not given back.
        unsafe { ptr.as_ptr().write(make()) };
        Pooled { ptr }
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        let layout = Layout::new::<T>();
        // SAFETY: `ptr` holds the value `place` wrote, valid and aligned; it is dropped
        // once, here, and the block is given back only after that.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        if layout.size() != 0 {
            give(layout, self.ptr.cast());
        }
    }
}

impl<T> std::ops::Deref for Pooled<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `ptr` holds an initialised value for the life of `self`, lent mutably
        // only through `&mut self` (so not while this borrow lasts).
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> std::ops::DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: `ptr` holds an initialised value for the life of `self`, and the
        // `Pooled` owns it alone, so `&mut self` makes this borrow unique.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::future::Future;
    use std::marker::PhantomPinned;
    use std::task::{Context, Poll};

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

    /// A future that is ready on its second poll, and checks that it was polled at the
    /// same address both times (as a self-referential `async` state needs).
    struct StaysPut {
        first: Cell<usize>,
        _pin: PhantomPinned,
    }

    impl Future for StaysPut {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let here = &*self as *const StaysPut as usize;
            match self.first.replace(here) {
                0 => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                first => {
                    assert_eq!(first, here, "the pinned future moved between polls");
                    Poll::Ready(())
                }
            }
        }
    }

    #[test]
    fn a_pinned_future_stays_put_while_its_handle_moves() {
        let f = Pooled::with(|| StaysPut {
            first: Cell::new(0),
            _pin: PhantomPinned,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut f = f;
            assert!(futures_util::poll!(f.as_mut()).is_pending());
            // The handle moves (into a box on the heap); the future does not.
            let moved = Box::new(f);
            moved.await;
        });
    }
}
