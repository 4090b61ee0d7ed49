//! Stateless TLS session tickets: the keys that encrypt a session into a ticket the
//! client keeps, so any gateway holding the same keys resumes it.
//!
//! Keys come from `tls.ticket_keys_file` (a fleet shares the file; the first key
//! encrypts, every key decrypts, the file is re-read on reload) or, without it, are
//! random per process and rotated every 12 hours, the previous key kept for one more
//! period so a ticket stays good for 12 to 24 hours. A ticket is
//! `name (16) ‖ nonce (12) ‖ AES-256-GCM(session) ‖ tag (16)`, with the key name as
//! associated data; an unknown name or a bad tag is a full handshake, never an error.

use super::crypto::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use super::crypto::rand::{SecureRandom, SystemRandom};
use arc_swap::ArcSwap;
use base64::Engine as _;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often per-process keys change, and the lifetime hint tickets carry.
pub const ROTATE_EVERY: Duration = Duration::from_secs(12 * 60 * 60);

/// Bytes of a key as written in the file: a 16-byte name, then a 32-byte AES key.
pub const KEY_LEN: usize = 48;
const NAME_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Most keys a file may hold (the current one and its predecessors).
const MAX_KEYS: usize = 16;

/// One ticket key.
struct Key {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

impl Key {
    fn from_bytes(bytes: &[u8; KEY_LEN]) -> Option<Key> {
        let mut name = [0; NAME_LEN];
        name.copy_from_slice(&bytes[..NAME_LEN]);
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes[NAME_LEN..]).ok()?;
        Some(Key {
            name,
            aead: LessSafeKey::new(unbound),
        })
    }

    fn random(rng: &SystemRandom) -> Option<Key> {
        let mut bytes = [0; KEY_LEN];
        rng.fill(&mut bytes).ok()?;
        Key::from_bytes(&bytes)
    }
}

/// The keys in use: the first encrypts, all decrypt.
struct KeySet {
    keys: Vec<Arc<Key>>,
}

/// Where a ticketer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `tls.ticket_keys_file`.
    File(String),
    /// Random per process, rotated every [`ROTATE_EVERY`].
    Random,
}

/// Encrypts and decrypts session tickets (rustls's `ProducesTickets`).
pub struct Tickets {
    keys: ArcSwap<KeySet>,
    source: Source,
    rng: SystemRandom,
    /// Random keys only: when they were made, the next rotation (seconds after
    /// `born`) and the lock a rotation takes (no lock on the way to encrypt).
    born: Instant,
    next_rotation: AtomicU64,
    rotating: Mutex<()>,
    every: Duration,
}

impl fmt::Debug for Tickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tickets")
            .field("source", &self.source)
            .field("keys", &self.keys.load().keys.len())
            .finish()
    }
}

impl Tickets {
    /// Keys read from a file: one key per line, each [`KEY_LEN`] bytes in base64
    /// (`openssl rand -base64 48`); blank lines and `#` comments are skipped. Errors
    /// name the file and line.
    pub fn from_file(path: &Path) -> Result<Tickets, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read ticket keys {}: {e}", path.display()))?;
        let keys = parse_keys(&text).map_err(|(line, e)| {
            if line == 0 {
                format!("{}: {e}", path.display())
            } else {
                format!("{}:{line}: {e}", path.display())
            }
        })?;
        Ok(Tickets::new(
            keys,
            Source::File(path.display().to_string()),
            Duration::ZERO,
        ))
    }

    /// Random keys rotated every `every`.
    pub fn random(every: Duration) -> Result<Tickets, String> {
        let rng = SystemRandom::new();
        let key = Key::random(&rng).ok_or("the system random source failed")?;
        Ok(Tickets::new(vec![key], Source::Random, every))
    }

    fn new(keys: Vec<Key>, source: Source, every: Duration) -> Tickets {
        Tickets {
            keys: ArcSwap::from_pointee(KeySet {
                keys: keys.into_iter().map(Arc::new).collect(),
            }),
            source,
            rng: SystemRandom::new(),
            born: Instant::now(),
            next_rotation: AtomicU64::new(every.as_secs()),
            rotating: Mutex::new(()),
            every,
        }
    }

    /// Where the keys come from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The names of the keys in use, current first, in hex: what the state API shows
    /// so an operator can see that a fleet agrees.
    pub fn key_names(&self) -> Vec<String> {
        self.keys
            .load()
            .keys
            .iter()
            .map(|k| k.name[..4].iter().map(|b| format!("{b:02x}")).collect())
            .collect()
    }

    /// Rotates random keys when `now` has reached the next rotation: a new current
    /// key, the old one kept to decrypt for one more period. File keys never rotate
    /// here (the file does, on reload).
    pub fn rotate_if_due(&self, now: Instant) {
        if self.every.is_zero() {
            return;
        }
        let at = now.saturating_duration_since(self.born).as_secs();
        if at < self.next_rotation.load(Ordering::Acquire) {
            return;
        }
        let Ok(_one) = self.rotating.lock() else {
            return;
        };
        let next = self.next_rotation.load(Ordering::Acquire);
        if at < next {
            return; // Another thread rotated first.
        }
        let Some(fresh) = Key::random(&self.rng) else {
            return;
        };
        let old = self.keys.load();
        let every = self.every.as_secs().max(1);
        let mut keys = vec![Arc::new(fresh)];
        // The old current key opens its tickets for one more period, unless that
        // period is over too (nothing encrypted or decrypted for a while): then it goes.
        if at < next + every {
            keys.extend(old.keys.first().cloned());
        }
        self.keys.store(Arc::new(KeySet { keys }));
        let periods = (at - next) / every + 1;
        self.next_rotation
            .store(next + periods * every, Ordering::Release);
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.load();
        let key = keys.keys.first()?;
        let mut nonce = [0; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let mut body = out.split_off(NAME_LEN + NONCE_LEN);
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.name),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn open(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < NAME_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let keys = self.keys.load();
        let key = keys.keys.iter().find(|k| k.name[..] == *name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain_len = key
            .aead
            .open_in_place(nonce, Aad::from(name), &mut body)
            .ok()?
            .len();
        body.truncate(plain_len);
        Some(body)
    }
}

impl rustls::server::ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        ROTATE_EVERY.as_secs() as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.rotate_if_due(Instant::now());
        self.seal(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        // Rotating here too: after a quiet spell, a ticket whose key's time is over
        // must not open just because nothing was encrypted since.
        self.rotate_if_due(Instant::now());
        self.open(cipher)
    }
}

/// The process's random ticket keys, made at first use and shared by every listener
/// without a key file, so a reload does not lose the sessions clients hold.
pub fn process_keys() -> Result<Arc<Tickets>, String> {
    static KEYS: OnceLock<Arc<Tickets>> = OnceLock::new();
    if let Some(k) = KEYS.get() {
        return Ok(k.clone());
    }
    let made = Arc::new(Tickets::random(ROTATE_EVERY)?);
    Ok(KEYS.get_or_init(|| made).clone())
}

/// Parses a key file's text; an error carries its 1-based line (0 for the whole file).
fn parse_keys(text: &str) -> Result<Vec<Key>, (usize, String)> {
    let mut keys: Vec<Key> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // `#` starts a comment, on its own line or after a key (`#` is not base64).
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line)
            .map_err(|e| (i + 1, format!("a key is not base64 ({e})")))?;
        let bytes: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            (
                i + 1,
                format!(
                    "a key is {} bytes, it must be {KEY_LEN} (make one with `openssl rand -base64 48`)",
                    bytes.len()
                ),
            )
        })?;
        let key = Key::from_bytes(&bytes).ok_or((i + 1, "not an AES-256 key".to_owned()))?;
        if keys.iter().any(|k| k.name == key.name) {
            return Err((i + 1, "two keys have the same name (first 16 bytes)".into()));
        }
        keys.push(key);
        if keys.len() > MAX_KEYS {
            return Err((i + 1, format!("more than {MAX_KEYS} keys")));
        }
    }
    if keys.is_empty() {
        return Err((0, "no key found (one base64 key per line)".into()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    fn key_line(seed: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([seed; KEY_LEN])
    }

    fn from_text(text: &str) -> Tickets {
        Tickets::new(
            parse_keys(text).unwrap(),
            Source::File("t".into()),
            Duration::ZERO,
        )
    }

    #[test]
    fn a_ticket_opens_with_any_key_in_the_file_and_only_there() {
        let a = from_text(&format!("# keys\n{}   # current\n", key_line(1)));
        let t = a.encrypt(b"session").unwrap();
        assert_eq!(a.decrypt(&t).unwrap(), b"session");
        // A gateway with a new current key and the old one second still opens it.
        let b = from_text(&format!("{}\n\n{}\n", key_line(2), key_line(1)));
        assert_eq!(b.decrypt(&t).unwrap(), b"session");
        // Its own tickets carry the new key's name, which `a` does not know.
        assert!(a.decrypt(&b.encrypt(b"x").unwrap()).is_none());
        // Once the old key leaves the file, the ticket is a full handshake.
        let c = from_text(&key_line(2));
        assert!(c.decrypt(&t).is_none());
    }

    #[test]
    fn tampered_and_short_tickets_are_refused() {
        let a = from_text(&key_line(1));
        let mut t = a.encrypt(b"session").unwrap();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(a.decrypt(&t).is_none());
        assert!(a.decrypt(&t[..20]).is_none());
        assert!(a.decrypt(&[]).is_none());
    }

    #[test]
    fn key_file_errors_name_the_line() {
        let e = parse_keys(&format!("{}\nnot base64!\n", key_line(1)))
            .err()
            .unwrap();
        assert_eq!(e.0, 2);
        let e = parse_keys("# only a comment\naGVsbG8=\n").err().unwrap();
        assert_eq!(e.0, 2);
        assert!(e.1.contains("5 bytes"), "{}", e.1);
        let e = parse_keys(&format!("{}\n{}\n", key_line(1), key_line(1)))
            .err()
            .unwrap();
        assert_eq!(e.0, 2);
        assert_eq!(parse_keys("\n# none\n").err().unwrap().0, 0);
    }

    #[test]
    fn random_keys_rotate_on_a_driven_clock_and_keep_one_previous() {
        let every = Duration::from_secs(100);
        let k = Tickets::random(every).unwrap();
        let t0 = k.encrypt(b"s0").unwrap();
        let first = k.key_names();
        assert_eq!(first.len(), 1);
        // Not due yet.
        k.rotate_if_due(k.born + Duration::from_secs(99));
        assert_eq!(k.key_names(), first);
        // Due: a new current key; the old one still opens its tickets.
        k.rotate_if_due(k.born + Duration::from_secs(100));
        let second = k.key_names();
        assert_eq!(second.len(), 2);
        assert_eq!(second[1], first[0]);
        assert_eq!(k.decrypt(&t0).unwrap(), b"s0");
        let t1 = k.seal(b"s1").unwrap();
        // One more period: the first key is gone, the second still opens.
        k.rotate_if_due(k.born + Duration::from_secs(250));
        assert!(k.decrypt(&t0).is_none());
        assert_eq!(k.decrypt(&t1).unwrap(), b"s1");
        // A long pause skips the missed periods instead of rotating once per period,
        // and the key in use before it is gone: its period is long over.
        k.rotate_if_due(k.born + Duration::from_secs(10_000));
        let names = k.key_names();
        assert_eq!(names.len(), 1);
        assert!(k.decrypt(&t1).is_none());
        k.rotate_if_due(k.born + Duration::from_secs(10_001));
        assert_eq!(k.key_names(), names);
    }
}
