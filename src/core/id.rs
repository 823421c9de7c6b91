//! Identifiers made from random bytes the caller passes in: time-ordered event IDs (UUIDv7),
//! random visitor and session IDs (UUIDv4), and the session timeout rule.

use alloc::string::String;

/// A session ends after this long without activity.
pub const SESSION_TIMEOUT_MS: u64 = 30 * 60 * 1000;

fn hex(bytes: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// A UUIDv7: 48 bits of `now` (ms) first, then version, random bits and variant. Event IDs are
/// made this way so that the collector's index receives them roughly in order.
pub fn uuid_v7(now: u64, random: &[u8; 16]) -> String {
    let mut b = *random;
    let ms = now.to_be_bytes();
    b[..6].copy_from_slice(&ms[2..]);
    b[6] = 0x70 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    hex(&b)
}

/// A random UUIDv4, for visitor and session IDs.
pub fn uuid_v4(random: &[u8; 16]) -> String {
    let mut b = *random;
    b[6] = 0x40 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    hex(&b)
}

/// True when a session last active at `last_seen` is still going at `now`. A clock that went
/// backwards (another tab, a corrected clock) keeps the session rather than splitting it.
pub fn session_alive(last_seen: u64, now: u64, timeout: u64) -> bool {
    now.saturating_sub(last_seen) < timeout
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wire::is_uuid;

    #[test]
    fn v7_starts_with_the_time_and_sorts_by_it() {
        let a = uuid_v7(1_764_150_000_000, &[0xff; 16]);
        let b = uuid_v7(1_764_150_000_001, &[0x00; 16]);
        assert!(is_uuid(&a) && is_uuid(&b), "{a} {b}");
        assert_eq!(&a[..13], "019abf88-b980");
        assert_eq!(&a[14..15], "7");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert!(a < b, "later IDs sort after earlier ones whatever their random bits");
    }

    #[test]
    fn v4_has_version_and_variant() {
        let id = uuid_v4(&[0xab; 16]);
        assert_eq!(id, "abababab-abab-4bab-abab-abababababab");
        assert_ne!(uuid_v4(&[1; 16]), uuid_v4(&[2; 16]));
    }

    #[test]
    fn session_timeout() {
        let t = SESSION_TIMEOUT_MS;
        for (last, now, alive) in [
            (0, 0, true),
            (0, t - 1, true),
            (0, t, false),
            (1000, 10, true),
            (5, 5 + 10 * t, false),
        ] {
            assert_eq!(session_alive(last, now, t), alive, "{last} {now}");
        }
    }
}
