//! The pure core of the tag: every decision, no browser. Nothing here names `web_sys`, `js_sys`
//! or `wasm_bindgen`, and nothing reads a clock or a random source: time and random bytes are
//! arguments. Everything is tested natively with `cargo test`.

pub mod click;
pub mod command;
pub mod config;
pub mod id;
pub mod json;
pub mod link;
pub mod queue;
pub mod record;
pub mod retry;
pub mod store;
pub mod tracker;
pub mod url;
pub mod wire;

use alloc::vec::Vec;

/// `Vec::remove` without its panic path: the tag carries no panic formatting, so every index is
/// checked first and a bad one is simply nothing.
pub(crate) fn remove_at<T>(v: &mut Vec<T>, at: usize) -> Option<T> {
    // Bubbling the item to the end and popping it: `Vec::remove`'s own check formats its
    // message, and LLVM at `opt-level = "z"` does not always see that ours made it dead.
    let mut rest = v.get_mut(at..)?.iter_mut();
    let mut prev = rest.next()?;
    for x in rest {
        core::mem::swap(prev, x);
        prev = x;
    }
    v.pop()
}

/// `Vec::insert` without its panic path (an index past the end appends).
pub(crate) fn insert_at<T>(v: &mut Vec<T>, at: usize, item: T) {
    v.push(item);
    // Bubbling the new last item down to `at`, for the same reason as in `remove_at`.
    let at = at.min(v.len());
    let mut rest = v.get_mut(at..).into_iter().flatten().rev();
    if let Some(mut prev) = rest.next() {
        for x in rest {
            core::mem::swap(prev, x);
            prev = x;
        }
    }
}

/// `str::split_once` on an ASCII byte, without the char searcher (memchr and its slice-index
/// panic path): the byte is ASCII, so both halves start and end on character boundaries.
pub(crate) fn split_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|x| x == b)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// True when `s` holds a control character (C0, DEL or C1, as `char::is_control`), read from its
/// UTF-8 bytes without decoding: C1 characters are `0xC2 0x80..=0x9F`.
pub(crate) fn has_control(s: &str) -> bool {
    let b = s.as_bytes();
    // Outside the tag, the bytes up to the first that may start one are skipped eight at a time.
    #[cfg(not(feature = "tag"))]
    let mut i = words::first_of(b, |w| {
        words::below(w, 0x20) | words::equal(w, 0x7f) | words::equal(w, 0xc2)
    });
    #[cfg(feature = "tag")]
    let mut i = 0;
    while i < b.len() {
        if control_at(b, i) {
            return true;
        }
        i += 1;
    }
    false
}

/// True when a control character starts at `b[i]`.
fn control_at(b: &[u8], i: usize) -> bool {
    match b.get(i) {
        Some(&c) => c < 0x20 || c == 0x7f || (c == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..0xa0).contains(n))),
        None => false,
    }
}

/// Tests on eight bytes at once (SWAR), for the collector's decoding, where speed matters more
/// than the tag's size: a `u64` read little-endian, so its lowest flagged byte is the first in
/// the text. Flags are the high bit of each byte; a borrow can set flags above a flagged byte,
/// never below it, so the lowest flag is always exact.
#[cfg(any(not(feature = "tag"), test))]
pub(crate) mod words {
    const ONES: u64 = 0x0101_0101_0101_0101;

    /// The eight bytes of `b` from `i`, if there are eight.
    pub(crate) fn at(b: &[u8], i: usize) -> Option<u64> {
        let chunk: [u8; 8] = b.get(i..i.checked_add(8)?)?.try_into().ok()?;
        Some(u64::from_le_bytes(chunk))
    }

    /// Flags the bytes below `n` (which must be at most 0x80).
    pub(crate) const fn below(w: u64, n: u8) -> u64 {
        w.wrapping_sub(ONES * n as u64) & !w & (ONES * 0x80)
    }

    /// Flags the bytes equal to `b`.
    pub(crate) const fn equal(w: u64, b: u8) -> u64 {
        below(w ^ (ONES * b as u64), 1)
    }

    /// The offset of the first flagged byte (8 when none is).
    pub(crate) const fn first(mask: u64) -> usize {
        (mask.trailing_zeros() / 8) as usize
    }

    /// The first offset in `b` whose byte `flags` flags, or `b.len()`: eight bytes at a time,
    /// the last eight overlapping the word before (whose bytes were not flagged), and a text
    /// shorter than eight padded with `a`, which `flags` must not flag.
    pub(crate) fn first_of(b: &[u8], flags: impl Fn(u64) -> u64) -> usize {
        let n = b.len();
        let mut pos = 0;
        loop {
            let (start, w) = match at(b, pos) {
                Some(w) => (pos, w),
                None => match n.checked_sub(8) {
                    Some(last) => (last, at(b, last).unwrap_or(0)),
                    None => {
                        let mut pad = [b'a'; 8];
                        for (d, s) in pad.iter_mut().zip(b) {
                            *d = *s;
                        }
                        (0, u64::from_le_bytes(pad))
                    }
                },
            };
            let m = flags(w);
            if m != 0 {
                return (start + first(m)).min(n);
            }
            pos += 8;
            if pos >= n {
                return n;
            }
        }
    }
}

/// `str::split_at` without its panic path: `None` when `at` is past the end or not on a
/// character boundary.
pub(crate) fn split_at(s: &str, at: usize) -> Option<(&str, &str)> {
    Some((s.get(..at)?, s.get(at..)?))
}

/// `str::split` on an ASCII byte, without the char searcher.
pub(crate) fn parts(s: &str, b: u8) -> Parts<'_> {
    Parts { rest: Some(s), b }
}

/// The iterator of [`parts`].
pub(crate) struct Parts<'a> {
    rest: Option<&'a str>,
    b: u8,
}

impl<'a> Iterator for Parts<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let r = self.rest?;
        match split_byte(r, self.b) {
            Some((part, rest)) => {
                self.rest = Some(rest);
                Some(part)
            }
            None => self.rest.take(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    #[test]
    fn remove_and_insert_match_vec_without_panicking() {
        for at in 0..6 {
            let mut ours = vec![0, 1, 2, 3, 4];
            let mut std = ours.clone();
            let want = (at < std.len()).then(|| std.remove(at));
            assert_eq!(remove_at(&mut ours, at), want, "remove_at {at}");
            assert_eq!(ours, std, "remove_at {at}");

            let mut ours = vec![0, 1, 2, 3, 4];
            let mut std = ours.clone();
            std.insert(at.min(std.len()), 9);
            insert_at(&mut ours, at, 9);
            assert_eq!(ours, std, "insert_at {at}");
        }
        assert_eq!(remove_at(&mut Vec::<u8>::new(), 0), None);
        let mut v = vec![];
        insert_at(&mut v, 7, 'x');
        assert_eq!(v, ['x'], "an index past the end appends");
    }

    #[test]
    fn byte_splitting_matches_str_split() {
        for s in ["", "a", "a=b", "=b", "a=", "a=b=c", "==", "é=ü"] {
            assert_eq!(split_byte(s, b'='), s.split_once('='), "{s:?}");
            let ours: Vec<&str> = parts(s, b'=').collect();
            let std: Vec<&str> = s.split('=').collect();
            assert_eq!(ours, std, "{s:?}");
        }
    }

    #[test]
    fn control_characters_match_char_is_control() {
        let samples: Vec<String> = (0u32..0x3000)
            .filter_map(char::from_u32)
            .map(|c| alloc::format!("a{c}b"))
            .collect();
        for s in samples
            .iter()
            .map(String::as_str)
            .chain(["", "plain", "é", "\u{2028}", "€"])
        {
            assert_eq!(has_control(s), s.chars().any(char::is_control), "{s:?}");
        }
        // Long enough for eight bytes at a time, with the character at every offset of a word
        // and across a word's edge.
        let filler = "abcdefghijklmnopqrstuvwxyz";
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            for at in 0..18 {
                let s = alloc::format!("{}{c}{}", &filler[..at], &filler[at..]);
                assert_eq!(has_control(&s), s.chars().any(char::is_control), "{s:?}");
            }
        }
    }

    /// The SWAR tests flag exactly the bytes they name, and the first flag is the first byte.
    #[test]
    fn word_tests_find_the_first_byte() {
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                for at in [0usize, 3, 7] {
                    let mut b = [b'a'; 8];
                    b[at] = x;
                    if at < 7 {
                        b[at + 1] = y;
                    }
                    let w = words::at(&b, 0).unwrap();
                    for n in [1u8, 0x20, 0x80] {
                        let want = b.iter().position(|&c| c < n).unwrap_or(8);
                        assert_eq!(words::first(words::below(w, n)), want, "{b:?} below {n:#x}");
                    }
                    for e in [b'"', b'\\', 0x7f, 0xc2] {
                        let want = b.iter().position(|&c| c == e).unwrap_or(8);
                        assert_eq!(words::first(words::equal(w, e)), want, "{b:?} equal {e:#x}");
                    }
                }
            }
        }
        // The first flagged byte of texts of every length up to three words, wherever it is.
        let quote = |w: u64| words::equal(w, b'"');
        for n in 0..24 {
            assert_eq!(words::first_of(&alloc::vec![b'x'; n], quote), n, "none in {n}");
            for at in 0..n {
                let mut b = alloc::vec![b'x'; n];
                b[at] = b'"';
                if at + 2 < n {
                    b[at + 2] = b'"';
                }
                assert_eq!(words::first_of(&b, quote), at, "{n} {at}");
            }
        }
        assert_eq!(words::at(b"1234567", 0), None);
        assert_eq!(words::at(b"12345678", 1), None);
        assert_eq!(words::at(b"12345678", usize::MAX), None);
    }
}
