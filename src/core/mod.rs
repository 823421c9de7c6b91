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
pub mod text;
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
        // The character at every offset of a longer text.
        let filler = "abcdefghijklmnopqrstuvwxyz";
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            for at in 0..18 {
                let s = alloc::format!("{}{c}{}", &filler[..at], &filler[at..]);
                assert_eq!(has_control(&s), s.chars().any(char::is_control), "{s:?}");
            }
        }
    }
}
