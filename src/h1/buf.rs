//! Each worker's I/O buffers: taken when bytes arrive, given back when empty.
//!
//! An idle keep-alive connection, client or upstream side, holds no buffer (the cost
//! hyper#2303 and Pingora's #447 describe): it waits for readability, takes a buffer
//! from the worker's free list, and gives it back once the request is done and nothing
//! is pipelined behind it. The free list is thread-local (no lock) and bounded, so a
//! burst does not keep its memory forever.
//!
//! A second, smaller class ([`take_head`]) holds a request's or an answer's field lines
//! while the request is in flight (see `head::RawRequest`, `head::RawFields`): a head
//! rarely needs more than a few hundred bytes, and a full I/O buffer for each would
//! triple what a request in flight holds. A third, larger one ([`Buf::answer`]) reads an
//! upstream's answer: a head and a 16 KiB body in one receive, to the client in one
//! write (with 16 KiB, the body's last bytes took a receive and a send of their own).

use std::cell::RefCell;

/// Size of a pooled buffer.
pub const SIZE: usize = 16 * 1024;

/// Buffers kept per worker at most (4 MiB).
const KEEP: usize = 256;

/// Size of a pooled buffer for an upstream's answer: its head and a 16 KiB body fit
/// one receive, and go to the client in one write.
pub const ANSWER_SIZE: usize = 32 * 1024;

/// Answer buffers kept per worker at most (2 MiB).
const KEEP_ANSWERS: usize = 64;

/// Size of a pooled head buffer.
pub const HEAD_SIZE: usize = 1024;

/// Head buffers kept per worker at most (64 KiB): about the requests one worker has in
/// flight at once under load; a burst beyond it allocates, and frees afterwards.
const KEEP_HEADS: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static FREE_HEADS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static FREE_ANSWERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of bytes read but not yet consumed: `data()` is `v[start..]`.
#[derive(Debug, Default)]
pub struct Buf {
    v: Vec<u8>,
    start: usize,
}

impl Buf {
    /// An empty buffer that owns no memory yet.
    pub const fn new() -> Self {
        Buf {
            v: Vec::new(),
            start: 0,
        }
    }

    /// An empty buffer holding a pooled one of [`ANSWER_SIZE`] (for an upstream's
    /// answer).
    pub fn answer() -> Self {
        Buf {
            v: FREE_ANSWERS
                .with(|f| f.borrow_mut().pop())
                .unwrap_or_else(|| Vec::with_capacity(ANSWER_SIZE)),
            start: 0,
        }
    }

    /// Bytes read and not consumed.
    pub fn data(&self) -> &[u8] {
        &self.v[self.start..]
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.start == self.v.len()
    }

    /// Number of bytes waiting.
    pub fn len(&self) -> usize {
        self.v.len() - self.start
    }

    /// Marks `n` bytes consumed.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.v.len());
        if self.start == self.v.len() {
            self.v.clear();
            self.start = 0;
        }
    }

    /// Room to read into, at least `want` bytes (bytes already consumed are reclaimed
    /// first, and a buffer is taken from the pool when there is none); `max` bounds
    /// the waiting bytes plus the room (at least one byte of room is always given).
    pub fn spare(&mut self, max: usize) -> &mut Vec<u8> {
        if self.v.capacity() == 0 {
            self.v = take();
        }
        if self.start > 0 && self.v.capacity() - self.v.len() < 1024 {
            self.v.drain(..self.start);
            self.start = 0;
        }
        if self.v.len() == self.v.capacity() {
            let grow = (self.len().max(SIZE))
                .min(max.saturating_sub(self.len()))
                .max(1);
            self.v.reserve(grow);
        }
        &mut self.v
    }

    /// Appends bytes (for tests and for writes that gather).
    pub fn extend(&mut self, b: &[u8]) {
        if self.v.capacity() == 0 {
            self.v = take();
        }
        self.v.extend_from_slice(b);
    }

    /// Gives the memory back to the pool if nothing is waiting.
    pub fn release_if_empty(&mut self) {
        if self.is_empty() && self.v.capacity() != 0 {
            give(std::mem::take(&mut self.v));
            self.start = 0;
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if self.v.capacity() != 0 {
            give(std::mem::take(&mut self.v));
        }
    }
}

/// A cleared buffer of at least [`SIZE`] bytes.
pub fn take() -> Vec<u8> {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(SIZE))
}

/// A cleared buffer for about `len` bytes of field lines: a pooled one of
/// [`HEAD_SIZE`] when they fit, else one of their size.
pub fn take_head(len: usize) -> Vec<u8> {
    if len > HEAD_SIZE {
        return Vec::with_capacity(len);
    }
    FREE_HEADS
        .with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(HEAD_SIZE))
}

/// Returns a buffer to its pool; one of neither size (it grew) is freed instead.
pub fn give(mut v: Vec<u8>) {
    let (pool, keep) = match v.capacity() {
        SIZE => (&FREE, KEEP),
        HEAD_SIZE => (&FREE_HEADS, KEEP_HEADS),
        ANSWER_SIZE => (&FREE_ANSWERS, KEEP_ANSWERS),
        _ => return,
    };
    v.clear();
    pool.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < keep {
            f.push(v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_go_back_when_empty() {
        let mut b = Buf::new();
        assert_eq!(b.v.capacity(), 0);
        b.extend(b"hello");
        assert_eq!(b.data(), b"hello");
        b.consume(2);
        assert_eq!(b.data(), b"llo");
        b.release_if_empty();
        assert_eq!(b.len(), 3);
        b.consume(3);
        b.release_if_empty();
        assert_eq!(b.v.capacity(), 0);
        let again = take();
        assert_eq!(again.capacity(), SIZE);

        // Each class goes back to its own pool.
        let mut a = Buf::answer();
        assert_eq!(a.v.capacity(), ANSWER_SIZE);
        a.extend(b"HTTP/1.1 200 OK\r\n\r\n");
        let at = a.v.as_ptr();
        a.consume(a.len());
        a.release_if_empty();
        assert_eq!(Buf::answer().v.as_ptr(), at);
        let h = take_head(100);
        assert_eq!(h.capacity(), HEAD_SIZE);
        give(h);
        assert_eq!(take_head(HEAD_SIZE).capacity(), HEAD_SIZE);
        assert_eq!(take_head(HEAD_SIZE + 1).capacity(), HEAD_SIZE + 1);
    }
}
