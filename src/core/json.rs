//! A small, strict JSON value with a parser and a writer: the tag's JSON. The collector reads
//! the wire format with serde_json (`wire::read_batch`) and uses this module only for what an
//! event carries as a free JSON value (`props`, `order.custom`) and to write events.
//!
//! Why not serde_json in the tag: every byte of the tag is downloaded on every page, and
//! serde_json with derived deserializers costs several KB of compressed wasm, most of it float
//! parsing we must not do anyway. Here numbers stay the exact text the sender wrote (validated
//! against the JSON grammar), so an order amount of `49.90` is carried as `49.90`, never through
//! an `f64`. Every function here is built for the tag's size, not for speed.
//!
//! The parser is written for hostile input: nesting depth is bounded, every byte is checked
//! against the grammar, lone surrogates in `\u` escapes are rejected, and lookups are linear in
//! the input (duplicate keys are kept and the last one wins, as in JavaScript's `JSON.parse`).

use alloc::string::String;
use alloc::vec::Vec;

/// A parsed JSON value. Objects keep their members in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, as the exact text that was parsed (always valid JSON number syntax).
    Num(String),
    /// A string, unescaped.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object: members in document order; the last of duplicate keys wins in [`Json::get`].
    Obj(Vec<(String, Json)>),
}

/// Why a JSON text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonError {
    /// The text ended inside a value.
    Eof,
    /// A byte that the grammar does not allow here.
    Syntax,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A malformed escape or a lone surrogate.
    BadEscape,
    /// Text after the value.
    Trailing,
}

impl JsonError {
    /// A short English reason, for error reports (its code in the production tag).
    pub fn as_str(self) -> &'static str {
        use super::text as t;
        match self {
            JsonError::Eof => t::JSON_EOF,
            JsonError::Syntax => t::JSON_SYNTAX,
            JsonError::TooDeep => t::JSON_DEEP,
            JsonError::BadEscape => t::JSON_ESCAPE,
            JsonError::Trailing => t::JSON_TRAILING,
        }
    }
}

/// How deep arrays and objects may nest.
pub const MAX_DEPTH: usize = 32;

/// Parses one JSON text (surrounding white space allowed).
pub fn parse(text: &str) -> Result<Json, JsonError> {
    parse_from(text, 0)
}

/// Parses one JSON value that stands `depth` levels deep in a larger text, so that
/// [`MAX_DEPTH`] counts from that text's root (the collector reads `props` this way).
pub fn parse_at(text: &str, depth: usize) -> Result<Json, JsonError> {
    parse_from(text, depth)
}

// Inlined, so that the tag's `parse` is the code it was before `parse_at` (25 bytes smaller).
#[inline(always)]
fn parse_from(text: &str, depth: usize) -> Result<Json, JsonError> {
    let mut p = Parser {
        t: text,
        b: text.as_bytes(),
        i: 0,
    };
    let v = p.value(depth)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(JsonError::Trailing);
    }
    Ok(v)
}

impl Json {
    /// The member `key` of an object (the last one, if repeated); `None` for other values.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => {
                let mut found = None;
                for (k, v) in m {
                    if k == key {
                        found = Some(v);
                    }
                }
                found
            }
            _ => None,
        }
    }

    /// The member `key` of an object, to change or take (the last one, if repeated, as in
    /// [`Json::get`]).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Obj(m) => m.iter_mut().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The members, if this is an object.
    pub fn as_obj(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Obj(m) => Some(m),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_arr(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }

    /// The value as a non-negative integer, if it is a number without fraction or exponent
    /// that fits in a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Num(n) => parse_u64(n),
            _ => None,
        }
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// Appends this value as compact JSON text.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(true) => out.push_str("true"),
            Json::Bool(false) => out.push_str("false"),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => write_str(out, s),
            Json::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// This value as compact JSON text.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

/// Parses decimal digits into a `u64`; `None` on anything else or overflow.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(n)
}

/// Appends `n` in decimal (without `core::fmt`, which would cost the tag kilobytes), by
/// recursion: the smallest code.
pub fn write_u64(out: &mut String, n: u64) {
    if n >= 10 {
        write_u64(out, n / 10);
    }
    out.push((b'0' + (n % 10) as u8) as char);
}

/// Appends `s` as a JSON string literal. Besides the required escapes, `<`, `>` and `&` are
/// escaped too, so a value written into an HTML page can never close a `<script>` element, and
/// so are U+2028 and U+2029. One `char` at a time: the smallest code. The collector (the `serde`
/// feature), which writes every event it stores, first looks whether anything needs an escape
/// and copies a string that needs none (the usual) at once.
pub fn write_str(out: &mut String, s: &str) {
    #[cfg(feature = "serde")]
    if plain(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' || c == '\u{2028}' || c == '\u{2029}' => {
                let n = c as u32;
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((n >> shift) & 15) as usize] as char);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// True when [`write_str`] escapes nothing in `s`.
#[cfg(feature = "serde")]
fn plain(s: &str) -> bool {
    // Per byte: 1 when it is escaped (ASCII controls, `"`, `\\`, `<`, `>`, `&`), 2 when it may
    // start U+2028 or U+2029 (0xE2 starts other punctuation too, such as — and ’).
    const CLASS: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut b = 0;
        while b < 0x20 {
            t[b] = 1;
            b += 1;
        }
        t[b'"' as usize] = 1;
        t[b'\\' as usize] = 1;
        t[b'<' as usize] = 1;
        t[b'>' as usize] = 1;
        t[b'&' as usize] = 1;
        t[0xe2] = 2;
        t
    };
    match s.bytes().fold(0, |class, b| class | CLASS[b as usize]) {
        0 => true,
        2 => !s.contains(['\u{2028}', '\u{2029}']),
        _ => false,
    }
}

struct Parser<'a> {
    /// The text, for slicing runs out of it (checked at character boundaries, not re-validated).
    t: &'a str,
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn lit(&mut self, word: &[u8], v: Json) -> Result<Json, JsonError> {
        match self.b.get(self.i..self.i + word.len()) {
            Some(w) if w == word => {
                self.i += word.len();
                Ok(v)
            }
            Some(_) => Err(JsonError::Syntax),
            None => Err(JsonError::Eof),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.ws();
        match self.peek().ok_or(JsonError::Eof)? {
            b'n' => self.lit(b"null", Json::Null),
            b't' => self.lit(b"true", Json::Bool(true)),
            b'f' => self.lit(b"false", Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'-' | b'0'..=b'9' => self.number(),
            b'[' => {
                if depth >= MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek().ok_or(JsonError::Eof)? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Ok(Json::Arr(a));
                        }
                        _ => return Err(JsonError::Syntax),
                    }
                }
            }
            b'{' => {
                if depth >= MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    if self.peek().ok_or(JsonError::Eof)? != b'"' {
                        return Err(JsonError::Syntax);
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.peek().ok_or(JsonError::Eof)? != b':' {
                        return Err(JsonError::Syntax);
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    m.push((k, v));
                    self.ws();
                    match self.peek().ok_or(JsonError::Eof)? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return Err(JsonError::Syntax),
                    }
                }
            }
            _ => Err(JsonError::Syntax),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek().ok_or(JsonError::Eof)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return Err(JsonError::Syntax),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
        }
        // The bytes are ASCII digits and signs, so this slice is valid UTF-8.
        let text = self.t.get(start..self.i).ok_or(JsonError::Syntax)?;
        Ok(Json::Num(String::from(text)))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self.b.get(self.i..self.i + 4).ok_or(JsonError::Eof)?;
        let mut n = 0u32;
        for &c in h {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(JsonError::BadEscape),
            };
            n = n * 16 + d as u32;
        }
        self.i += 4;
        Ok(n)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1; // the opening quote
        let mut s = String::new();
        loop {
            // Copy the longest run of plain bytes at once; the input is a &str, so any run that
            // stops at an ASCII byte is valid UTF-8.
            let start = self.i;
            self.i = run_end(self.b, self.i);
            if self.i > start {
                let run = self.t.get(start..self.i);
                s.push_str(run.ok_or(JsonError::Syntax)?);
            }
            match self.peek().ok_or(JsonError::Eof)? {
                b'"' => {
                    self.i += 1;
                    return Ok(s);
                }
                b'\\' => {
                    self.i += 1;
                    let e = self.peek().ok_or(JsonError::Eof)?;
                    self.i += 1;
                    match e {
                        b'"' => s.push('"'),
                        b'\\' => s.push('\\'),
                        b'/' => s.push('/'),
                        b'b' => s.push('\u{8}'),
                        b'f' => s.push('\u{c}'),
                        b'n' => s.push('\n'),
                        b'r' => s.push('\r'),
                        b't' => s.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(JsonError::BadEscape);
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(JsonError::BadEscape);
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(JsonError::BadEscape);
                            } else {
                                hi
                            };
                            s.push(char::from_u32(cp).ok_or(JsonError::BadEscape)?);
                        }
                        _ => return Err(JsonError::BadEscape),
                    }
                }
                _ => return Err(JsonError::Syntax), // a raw control character
            }
        }
    }
}

/// The first byte at or after `i` that ends a plain run in a JSON string: `"`, `\\` or a raw
/// control byte (or the end).
fn run_end(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    fn roundtrip(input: &str) -> Result<String, JsonError> {
        parse(input).map(|v| v.to_text())
    }

    /// Every kind of character at every offset of a longer string, raw and escaped: each reads
    /// back as written, and a raw control character is refused wherever it stands.
    #[test]
    fn strings_read_back_with_every_character_at_every_offset() {
        let filler = "abcdefghijklmnopqrstuvwxyz";
        for c in (0u32..0x3000).chain([0x1F600]).filter_map(char::from_u32) {
            for at in 0..18 {
                let value = format!("{}{c}{}", &filler[..at], &filler[at..]);
                let mut text = String::new();
                write_str(&mut text, &value);
                assert_eq!(parse(&text), Ok(Json::Str(value.clone())), "{text}");
                let raw = format!("\"{value}\"");
                match c {
                    '"' => assert_eq!(parse(&raw), Err(JsonError::Trailing), "{raw:?}"),
                    '\\' => {} // raw, it escapes the next letter
                    c if (c as u32) < 0x20 => assert_eq!(parse(&raw), Err(JsonError::Syntax), "{raw:?}"),
                    _ => assert_eq!(parse(&raw), Ok(Json::Str(value)), "{raw:?}"),
                }
            }
        }
        // Plain runs of every length, and a text that ends inside a string.
        for n in 0..20 {
            let value = "x".repeat(n);
            assert_eq!(parse(&format!("\"{value}\"")), Ok(Json::Str(value.clone())));
            assert_eq!(parse(&format!("\"{value}")), Err(JsonError::Eof), "{n}");
            assert_eq!(parse(&format!("\"{value}\\")), Err(JsonError::Eof), "{n}");
        }
    }

    #[test]
    fn parses_and_writes_compactly() {
        let cases: &[(&str, Result<&str, JsonError>)] = &[
            ("null", Ok("null")),
            (" true ", Ok("true")),
            ("[1, 2.50, -0, 1e3, 1E-2]", Ok("[1,2.50,-0,1e3,1E-2]")),
            (r#"{"a": "b", "c": [ ]}"#, Ok(r#"{"a":"b","c":[]}"#)),
            (r#""\u00e9\ud83d\ude00""#, Ok("\"é😀\"")),
            (r#""a\"b\\c\/d\n""#, Ok(r#""a\"b\\c/d\n""#)),
            (r#""<script>&""#, Ok(r#""\u003cscript\u003e\u0026""#)),
            ("", Err(JsonError::Eof)),
            ("[1,]", Err(JsonError::Syntax)),
            ("01", Err(JsonError::Trailing)),
            ("1.", Err(JsonError::Syntax)),
            ("-", Err(JsonError::Eof)),
            (".5", Err(JsonError::Syntax)),
            ("NaN", Err(JsonError::Syntax)),
            ("{'a':1}", Err(JsonError::Syntax)),
            ("{\"a\" 1}", Err(JsonError::Syntax)),
            ("\"abc", Err(JsonError::Eof)),
            ("\"a\u{1}b\"", Err(JsonError::Syntax)),
            (r#""\ud800""#, Err(JsonError::BadEscape)),
            (r#""\udc00""#, Err(JsonError::BadEscape)),
            (r#""\ud800\u0041""#, Err(JsonError::BadEscape)),
            (r#""\x41""#, Err(JsonError::BadEscape)),
            (r#""\u12G4""#, Err(JsonError::BadEscape)),
            ("tru", Err(JsonError::Eof)),
            ("trUe", Err(JsonError::Syntax)),
            ("[1] x", Err(JsonError::Trailing)),
        ];
        for (input, want) in cases {
            let got = roundtrip(input);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "input {input:?}");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep), Err(JsonError::TooDeep));
        // A hostile depth far beyond the limit fails fast instead of overflowing the stack.
        assert_eq!(parse(&"[".repeat(100_000)), Err(JsonError::TooDeep));
    }

    #[test]
    fn last_duplicate_key_wins_like_javascript() {
        let v = parse(r#"{"k":1,"k":2}"#).unwrap();
        assert_eq!(v.get("k"), Some(&Json::Num("2".to_string())));
        assert_eq!(v.get("missing"), None);
    }

    #[test]
    fn integers() {
        for (s, want) in [
            ("0", Some(0)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("1.0", None),
            ("-1", None),
            ("1e3", None),
        ] {
            assert_eq!(parse(s).unwrap().as_u64(), want, "{s}");
        }
        for n in [
            0u64,
            1,
            7,
            9,
            10,
            99,
            100,
            1_764_150_000_000,
            10_000_000_000_000_000_000,
            u64::MAX,
        ] {
            let mut s = String::new();
            write_u64(&mut s, n);
            assert_eq!(s, format!("{n}"));
        }
    }

    #[test]
    fn every_control_character_is_escaped() {
        let all: String = (0u32..0x80).filter_map(char::from_u32).collect();
        let text = Json::Str(all.clone()).to_text();
        assert!(text.bytes().all(|b| b >= 0x20), "{text}");
        assert_eq!(parse(&text).unwrap(), Json::Str(all));
    }

    #[test]
    fn strings_are_written_with_their_escapes() {
        let write = |s: &str| {
            // Appending to text already there.
            let mut out = String::from("x");
            write_str(&mut out, s);
            out.split_off(1)
        };
        for (s, want) in [
            ("", r#""""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("<b>&</b>", r#""\u003cb\u003e\u0026\u003c/b\u003e""#),
            ("x\u{2028}y\u{2029}\u{2027}", "\"x\\u2028y\\u2029\u{2027}\""),
            ("\u{0}\u{1f}\u{7f}\t\r\n€", "\"\\u0000\\u001f\u{7f}\\t\\r\\n€\""),
            // Neighbours of the separators are copied, not escaped.
            (
                "\u{2027}\u{202a}\u{2000}\u{20ac}",
                "\"\u{2027}\u{202a}\u{2000}\u{20ac}\"",
            ),
            ("Café — 49,90 € ✓ 𝄞", "\"Café — 49,90 € ✓ 𝄞\""),
        ] {
            assert_eq!(write(s), want, "{s:?}");
        }
        // Every character of these classes, alone and beside its neighbour: escaped exactly
        // when it must be, and read back as it was.
        let escaped =
            |c: char| (c as u32) < 0x20 || matches!(c, '"' | '\\' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}');
        let sample: Vec<char> = (0u32..0x300)
            .chain(0x2000..0x2100)
            .chain([0xfffd, 0x1f600])
            .filter_map(char::from_u32)
            .collect();
        for c in &sample {
            let text = write(&c.to_string());
            assert_eq!(text.starts_with("\"\\"), escaped(*c), "{c:?}: {text}");
            assert_eq!(parse(&text), Ok(Json::Str(c.to_string())), "{c:?}");
        }
        for w in sample.windows(2) {
            let s: String = w.iter().collect();
            assert_eq!(parse(&write(&s)), Ok(Json::Str(s.clone())), "{s:?}");
        }
    }
}
