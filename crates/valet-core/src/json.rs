//! A validating JSON reader for taking a few fields out of a large document.
//!
//! An 8 KB AdmissionReview carries a few dozen strings the webhook needs and
//! hundreds it does not (`managedFields`, probes, resources, `userInfo`, the
//! keys of all of them). serde_json decodes every key of a struct it reads to
//! match it against the field names, and its derive machinery costs more per
//! value than the value itself; this reader matches keys as raw bytes and
//! skips values with a loop that only checks the grammar. The callers (the
//! `read` functions of [`crate::pod`] and [`crate::admission`]) say which
//! fields they want and skip the rest.
//!
//! It accepts and refuses what serde_json does for those types: the whole
//! body must be JSON, strings that are kept must be valid UTF-8 with valid
//! escapes (no lone surrogates), skipped strings only need valid escapes and
//! no control characters, as serde_json's own skipping requires. Nesting of
//! skipped values is unbounded (an explicit stack, never recursion), as in
//! serde_json's skipping; the types read have a fixed depth. No `unsafe` but
//! the call of an SSE2 function (see [`block_mask`]).

use std::borrow::Cow;

use crate::text::{Str, StrMap};

/// Malformed JSON, or JSON of the wrong shape, and where.
///
/// Boxed: a `Result` of one pointer comes back in a register, and every
/// small function of the reader returns one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0)]
pub struct JsonError(Box<Located>);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg} at line {line} column {column}")]
struct Located {
    msg: Cow<'static, str>,
    line: usize,
    column: usize,
}

impl JsonError {
    /// What is wrong, without the position.
    pub fn message(&self) -> &str {
        &self.0.msg
    }
    /// 1-based.
    pub fn line(&self) -> usize {
        self.0.line
    }
    /// 1-based, in bytes.
    pub fn column(&self) -> usize {
        self.0.column
    }
}

pub type Result<T> = std::result::Result<T, JsonError>;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The containers below the 64th level that [`skip`] is in.
    deep: Vec<bool>,
    specials: Specials,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;

/// Bit 7 of each byte of `w` that ends a run of string text: `"`, `\\` or a
/// control character. Exact per byte (no carry crosses bytes), so the flags
/// can be searched from any position: on the low seven bits of a byte,
/// adding 0x7F sets bit 7 unless they are zero, adding 0x60 unless they are
/// below 0x20; bytes with bit 7 set end nothing.
#[inline(always)]
fn special_flags(w: u64) -> u64 {
    let low = w & LOW7;
    let not_quote = (low ^ (ONES * u64::from(b'"'))) + LOW7;
    let not_backslash = (low ^ (ONES * u64::from(b'\\'))) + LOW7;
    let not_control = low + ONES * 0x60;
    !(not_quote & not_backslash & not_control) & !w & HIGH
}

/// One bit per byte of a 64-byte block: which bytes end a run of text.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
#[inline]
fn block_mask_swar(block: &[u8; 64]) -> u64 {
    let mut mask = 0;
    for (k, word) in block.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        // Gathers bit 7 of each byte into the top byte (the products of
        // distinct bit pairs land on distinct bits: no carries).
        let packed = ((special_flags(w) >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        mask |= packed << (8 * k);
    }
    mask
}

/// [`block_mask_swar`] with SSE2: a quarter of the time, which is a sixth of
/// the decode of a review.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn block_mask(block: &[u8; 64]) -> u64 {
    // SAFETY: the one requirement of a `target_feature` function is that
    // the CPU has the feature, and this is compiled only where SSE2 is
    // enabled for the whole program (every x86_64 CPU has it). Its body is
    // safe code: the bytes come in through `u64`s, with no pointer.
    unsafe { block_mask_sse2(block) }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn block_mask_sse2(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8,
    };
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let below_space = _mm_set1_epi8(0x1F);
    let mut mask = 0;
    for (k, lane) in block.chunks_exact(16).enumerate() {
        let low = i64::from_le_bytes(lane[..8].try_into().expect("8 bytes"));
        let high = i64::from_le_bytes(lane[8..].try_into().expect("8 bytes"));
        let v = _mm_set_epi64x(high, low);
        let special = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
            // min(v, 0x1F) == v: v <= 0x1F, unsigned.
            _mm_cmpeq_epi8(_mm_min_epu8(v, below_space), v),
        );
        mask |= u64::from(_mm_movemask_epi8(special) as u16) << (16 * k);
    }
    mask
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
fn block_mask(block: &[u8; 64]) -> u64 {
    block_mask_swar(block)
}

/// Where strings end, 64 bytes at a time.
///
/// Finding the end of each string from its start puts a chain of
/// dependent steps between one string and the next, which was most of the
/// time of a review; the mask of a block does not depend on where the
/// reader is, and the next end is then a shift and a count of zeros.
#[derive(Clone, Copy)]
struct Specials {
    /// The block's first byte.
    start: usize,
    mask: u64,
}

impl Specials {
    fn new(buf: &[u8]) -> Self {
        let mut specials = Specials { start: 0, mask: 0 };
        specials.load(buf, 0);
        specials
    }

    /// The index of the first `"`, `\\` or control character at or after
    /// `pos` (`buf.len()` if none).
    #[inline(always)]
    fn find(&mut self, buf: &[u8], mut pos: usize) -> usize {
        loop {
            let offset = pos.wrapping_sub(self.start);
            if offset < 64 {
                let rest = self.mask >> offset;
                if rest != 0 {
                    return (pos + rest.trailing_zeros() as usize).min(buf.len());
                }
                pos = self.start + 64;
            }
            if pos >= buf.len() {
                return buf.len();
            }
            self.load(buf, pos);
        }
    }

    #[inline(never)]
    fn load(&mut self, buf: &[u8], pos: usize) {
        self.start = pos;
        self.mask = match buf.get(pos..pos + 64) {
            Some(block) => block_mask(block.try_into().expect("64 bytes")),
            None => {
                // The end of the body: padded with bytes that end nothing.
                let mut block = [b' '; 64];
                let rest = &buf[pos..];
                block[..rest.len()].copy_from_slice(rest);
                block_mask(&block)
            }
        };
    }
}

fn hex4(digits: &[u8]) -> Option<u16> {
    let mut n = 0u16;
    for &d in digits.get(..4)? {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        n = n << 4 | u16::from(v);
    }
    Some(n)
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            deep: Vec::new(),
            specials: Specials::new(buf),
        }
    }

    #[cold]
    #[inline(never)]
    pub fn error_at(&self, pos: usize, msg: impl Into<Cow<'static, str>>) -> JsonError {
        let pos = pos.min(self.buf.len());
        let before = &self.buf[..pos];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        JsonError(Box::new(Located {
            msg: msg.into(),
            line,
            column: pos - line_start + 1,
        }))
    }

    pub fn error(&self, msg: impl Into<Cow<'static, str>>) -> JsonError {
        self.error_at(self.pos, msg)
    }

    /// Skips whitespace and returns the next byte, not consuming it.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.buf.get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    /// Skips whitespace and returns the rest of the body from the next
    /// value on.
    #[inline]
    pub fn rest(&mut self) -> &'a [u8] {
        self.peek();
        &self.buf[self.pos..]
    }

    /// The body from `start` up to the reader's position.
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start..self.pos]
    }

    /// Where the reader is in the body.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Steps over the next `len` bytes: the caller has recognised them as
    /// one whole value (see [`crate::admission::decode_with`]).
    pub fn step_over(&mut self, len: usize) {
        self.pos = (self.pos + len).min(self.buf.len());
    }

    /// Only whitespace may follow the document.
    pub fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// The error for a value that is not what the caller reads (`next` is
    /// what `peek` returned).
    pub fn invalid_type(&self, next: Option<u8>, expected: &str) -> JsonError {
        let found = match next {
            None => return self.error("EOF while parsing a value"),
            Some(b'"') => "string",
            Some(b'{') => "map",
            Some(b'[') => "sequence",
            Some(b't' | b'f') => "boolean",
            Some(b'n') => "null",
            Some(b'-' | b'0'..=b'9') => "number",
            Some(_) => return self.error("expected value"),
        };
        self.error(format!("invalid type: {found}, expected {expected}"))
    }

    /// Consumes a `null` if one is next.
    #[inline]
    pub fn null(&mut self) -> Result<bool> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        let end = self.pos + word.len();
        match self.buf.get(self.pos..end) {
            Some(got) if got == word => {
                self.pos = end;
                Ok(())
            }
            Some(_) => Err(self.error("expected value")),
            None if self.buf[self.pos..].iter().zip(word).all(|(a, b)| a == b) => {
                Err(self.error_at(self.buf.len(), "EOF while parsing a value"))
            }
            None => Err(self.error("expected value")),
        }
    }

    #[inline]
    fn colon(&mut self) -> Result<()> {
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.error("expected `:`")),
            None => Err(self.error("EOF while parsing an object")),
        }
    }

    /// Reads an object: `field` is called with each key (escapes decoded,
    /// not yet checked to be UTF-8) and must consume its value, with
    /// [`Reader::skip_field`] when it does not want it. `expected` names the
    /// type for the error when the value is not an object.
    #[inline]
    pub fn object(
        &mut self,
        expected: &str,
        mut field: impl FnMut(&mut Self, Cow<'a, [u8]>) -> Result<()>,
    ) -> Result<()> {
        match self.peek() {
            Some(b'{') => self.pos += 1,
            other => return Err(self.invalid_type(other, expected)),
        }
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(());
            }
            Some(b'"') => {}
            Some(_) => return Err(self.error("key must be a string")),
            None => return Err(self.error("EOF while parsing an object")),
        }
        loop {
            let key = self.raw_string()?;
            self.colon()?;
            field(self, key)?;
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"') => {}
                        Some(b'}') => return Err(self.error("trailing comma")),
                        Some(_) => return Err(self.error("key must be a string")),
                        None => return Err(self.error("EOF while parsing an object")),
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(_) => return Err(self.error("expected `,` or `}`")),
                None => return Err(self.error("EOF while parsing an object")),
            }
        }
    }

    /// Reads an object as a struct of the named fields: `field` gets the
    /// index in `names` of each one present and reads its value; a field
    /// given twice is an error (as serde's derive says it), every other key
    /// is skipped.
    pub fn fields(
        &mut self,
        expected: &str,
        names: &[&str],
        mut field: impl FnMut(&mut Self, usize) -> Result<()>,
    ) -> Result<()> {
        debug_assert!(names.len() <= 64);
        let mut seen = 0u64;
        self.object(expected, |r, key| {
            match names.iter().position(|n| n.as_bytes() == &*key) {
                Some(i) => {
                    if seen & (1 << i) != 0 {
                        return Err(r.error(format!("duplicate field `{}`", names[i])));
                    }
                    seen |= 1 << i;
                    field(r, i)
                }
                None => r.skip_field(&key),
            }
        })
    }

    /// Skips the value of a field the caller does not read; its key must
    /// still be text.
    #[inline]
    pub fn skip_field(&mut self, key: &[u8]) -> Result<()> {
        if !key.is_ascii() && std::str::from_utf8(key).is_err() {
            return Err(self.error("invalid unicode code point in a key"));
        }
        // Most values skipped are strings: no need to set up `skip`.
        if self.peek() == Some(b'"')
            && let Some(end) = string_end(self.buf, &mut self.specials, self.pos + 1)
        {
            self.pos = end;
            return Ok(());
        }
        self.skip_value()
    }

    /// Reads an array, `item` reading each element.
    #[inline]
    pub fn array<T>(
        &mut self,
        expected: &str,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self.peek() {
            Some(b'[') => self.pos += 1,
            other => return Err(self.invalid_type(other, expected)),
        }
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Vec::new());
        }
        let mut items = Vec::with_capacity(4);
        loop {
            items.push(item(self)?);
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    if self.peek() == Some(b']') {
                        return Err(self.error("trailing comma"));
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(_) => return Err(self.error("expected `,` or `]`")),
                None => return Err(self.error("EOF while parsing a list")),
            }
        }
    }

    /// The fast way through the items a review has most of (env vars,
    /// volume mounts): an object of strings written compactly, as API
    /// servers write them, whose first key is `first`:
    /// `{"name":"HOME","value":"/root"}`. Returns the string of `first` when
    /// the whole object was read that way; otherwise it consumes nothing and
    /// the caller reads the object the general way, which also reports what
    /// is wrong with it. It steps aside for anything less plain: whitespace,
    /// escapes in `first`'s value or in a key, a non-ASCII key, `first`
    /// again, a value that is not a string.
    #[inline]
    pub fn compact_strings_object(&mut self, first: &[u8]) -> Option<Str<'a>> {
        let buf = self.buf;
        let mut p = self.pos;
        if buf.get(p..p + 2)? != b"{\"" || buf.get(p + 2..p + 2 + first.len())? != first {
            return None;
        }
        p += 2 + first.len();
        if buf.get(p..p + 3)? != b"\":\"" {
            return None;
        }
        p += 3;
        let end = self.specials.find(buf, p);
        if buf.get(end) != Some(&b'"') {
            return None;
        }
        let text = std::str::from_utf8(&buf[p..end]).ok()?;
        p = end + 1;
        loop {
            match *buf.get(p)? {
                b'}' => {
                    self.pos = p + 1;
                    return Some(Str(Cow::Borrowed(text)));
                }
                b',' if buf.get(p + 1) == Some(&b'"') => {}
                _ => return None,
            }
            let key_start = p + 2;
            let key_end = self.specials.find(buf, key_start);
            let key = &buf[key_start..key_end];
            if buf.get(key_end) != Some(&b'"') || key == first || !key.is_ascii() {
                return None;
            }
            if buf.get(key_end + 1..key_end + 3)? != b":\"" {
                return None;
            }
            p = string_end(buf, &mut self.specials, key_end + 3)?;
        }
    }

    /// Reads `null` as `None`, anything else with `read`.
    #[inline]
    pub fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        if self.null()? {
            Ok(None)
        } else {
            read(self).map(Some)
        }
    }

    /// Reads a `map[string]string`, keeping duplicated keys as [`StrMap`] does.
    pub fn str_map(&mut self) -> Result<StrMap<'a>> {
        let mut pairs = Vec::new();
        self.object("a map of strings to strings", |r, key| {
            let key = r.text(key)?;
            pairs.push((key, r.string()?));
            Ok(())
        })?;
        Ok(StrMap(pairs))
    }

    /// Reads a string value: borrowed from the input unless it has escapes.
    #[inline]
    pub fn string(&mut self) -> Result<Str<'a>> {
        match self.peek() {
            Some(b'"') => {}
            other => return Err(self.invalid_type(other, "a string")),
        }
        let raw = self.raw_string()?;
        self.text(raw)
    }

    /// A string just read by [`Reader::raw_string`] (a key, say) as text.
    #[inline]
    pub fn text(&self, raw: Cow<'a, [u8]>) -> Result<Str<'a>> {
        let text = match raw {
            Cow::Borrowed(bytes) => std::str::from_utf8(bytes).map(Cow::Borrowed),
            Cow::Owned(bytes) => String::from_utf8(bytes)
                .map(Cow::Owned)
                .map_err(|e| e.utf8_error()),
        };
        text.map(Str)
            .map_err(|_| self.error("invalid unicode code point"))
    }

    /// Reads a string with its escapes decoded, its bytes not yet checked
    /// to be UTF-8 (the caller checks what it keeps). At the opening quote.
    #[inline(always)]
    fn raw_string(&mut self) -> Result<Cow<'a, [u8]>> {
        let start = self.pos + 1;
        let end = self.specials.find(self.buf, start);
        match self.buf.get(end) {
            Some(b'"') => {
                self.pos = end + 1;
                Ok(Cow::Borrowed(&self.buf[start..end]))
            }
            _ => self.unescape(start, end).map(Cow::Owned),
        }
    }

    /// The slow path of [`Reader::raw_string`]: `at` is the first escape
    /// (or the error) after the text from `start`.
    #[cold]
    #[inline(never)]
    fn unescape(&mut self, start: usize, mut at: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(at - start + 16);
        out.extend_from_slice(&self.buf[start..at]);
        loop {
            match self.buf.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    at = self.escape(at, Some(&mut out))?;
                }
                Some(_) => return Err(self.control_character(at)),
                None => return Err(self.error_at(at, "EOF while parsing a string")),
            }
            let next = self.specials.find(self.buf, at);
            out.extend_from_slice(&self.buf[at..next]);
            at = next;
        }
    }

    fn control_character(&self, at: usize) -> JsonError {
        self.error_at(
            at,
            "control character (\\u0000-\\u001F) found while parsing a string",
        )
    }

    /// Checks the escape at `at` (a backslash) and returns the index after
    /// it. With `out`, decodes it there (and a lone surrogate is an error);
    /// without, only its form is checked, as serde_json checks the strings
    /// it skips.
    fn escape(&self, at: usize, out: Option<&mut Vec<u8>>) -> Result<usize> {
        let Some(&kind) = self.buf.get(at + 1) else {
            return Err(self.error_at(self.buf.len(), "EOF while parsing a string"));
        };
        let byte = match kind {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => return self.unicode_escape(at, out),
            _ => return Err(self.error_at(at + 1, "invalid escape")),
        };
        if let Some(out) = out {
            out.push(byte);
        }
        Ok(at + 2)
    }

    fn unicode_escape(&self, at: usize, out: Option<&mut Vec<u8>>) -> Result<usize> {
        let hex = |from: usize| match hex4(&self.buf[from.min(self.buf.len())..]) {
            Some(n) => Ok(n),
            None if self.buf.len() < from + 4 => {
                Err(self.error_at(self.buf.len(), "EOF while parsing a string"))
            }
            None => Err(self.error_at(from, "invalid escape")),
        };
        let first = hex(at + 2)?;
        let Some(out) = out else {
            return Ok(at + 6);
        };
        let (c, next) = match first {
            0xD800..=0xDBFF => {
                if self.buf.get(at + 6..at + 8) != Some(b"\\u") {
                    return Err(self.error_at(at + 6, "lone leading surrogate in hex escape"));
                }
                let second = hex(at + 8)?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error_at(at + 8, "lone leading surrogate in hex escape"));
                }
                let c =
                    0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00);
                (char::from_u32(c), at + 12)
            }
            _ => (char::from_u32(u32::from(first)), at + 6),
        };
        let Some(c) = c else {
            return Err(self.error_at(at, "lone trailing surrogate in hex escape"));
        };
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(next)
    }

    /// Skips a string without decoding it. At the opening quote.
    #[inline]
    fn skip_string(&mut self) -> Result<()> {
        let mut at = self.pos + 1;
        loop {
            at = self.specials.find(self.buf, at);
            match self.buf.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(());
                }
                Some(b'\\') => at = self.escape(at, None)?,
                Some(_) => return Err(self.control_character(at)),
                None => return Err(self.error_at(at, "EOF while parsing a string")),
            }
        }
    }

    fn skip_number(&mut self) -> Result<()> {
        let b = self.buf;
        let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
        let invalid = |i: usize| {
            if i >= b.len() {
                self.error_at(i, "EOF while parsing a value")
            } else {
                self.error_at(i, "invalid number")
            }
        };
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                if digit(i) {
                    return Err(invalid(i));
                }
            }
            Some(b'1'..=b'9') => {
                i += 1;
                while digit(i) {
                    i += 1;
                }
            }
            _ => return Err(invalid(i)),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digit(i) {
                return Err(invalid(i));
            }
            while digit(i) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digit(i) {
                return Err(invalid(i));
            }
            while digit(i) {
                i += 1;
            }
        }
        self.pos = i;
        Ok(())
    }

    /// Skips one value of any type, checking its grammar.
    #[inline]
    pub fn skip_value(&mut self) -> Result<()> {
        match skip(self.buf, self.pos, &mut self.deep, &mut self.specials) {
            Some(end) => {
                self.pos = end;
                Ok(())
            }
            None => Err(self.skip_error()),
        }
    }

    /// Why [`skip`] refused the value at `pos`: its slow twin says.
    #[cold]
    #[inline(never)]
    fn skip_error(&mut self) -> JsonError {
        match self.skip_value_slowly() {
            Err(e) => e,
            // They accept the same values; should they not, still refuse.
            Ok(()) => self.error("malformed JSON"),
        }
    }

    /// [`skip`] with errors that say what and where: the same grammar.
    fn skip_value_slowly(&mut self) -> Result<()> {
        // The closing bytes of the containers it is in.
        let mut stack = Vec::new();
        'value: loop {
            match self.peek() {
                Some(b'"') => self.skip_string()?,
                Some(b'{') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'}') => self.pos += 1,
                        Some(b'"') => {
                            stack.push(b'}');
                            self.skip_string()?;
                            self.colon()?;
                            continue 'value;
                        }
                        Some(_) => return Err(self.error("key must be a string")),
                        None => return Err(self.error("EOF while parsing an object")),
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        stack.push(b']');
                        continue 'value;
                    }
                }
                Some(b'-' | b'0'..=b'9') => self.skip_number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.error("expected value")),
                None => return Err(self.error("EOF while parsing a value")),
            }
            // A value ended: close the containers that end with it.
            while !stack.is_empty() {
                let close = stack[stack.len() - 1];
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if close == b'}' {
                            match self.peek() {
                                Some(b'"') => {
                                    self.skip_string()?;
                                    self.colon()?;
                                }
                                Some(b'}') => return Err(self.error("trailing comma")),
                                Some(_) => return Err(self.error("key must be a string")),
                                None => return Err(self.error("EOF while parsing an object")),
                            }
                        }
                        continue 'value;
                    }
                    Some(c) if c == close => {
                        self.pos += 1;
                        stack.pop();
                    }
                    Some(_) if close == b'}' => return Err(self.error("expected `,` or `}`")),
                    Some(_) => return Err(self.error("expected `,` or `]`")),
                    None if close == b'}' => {
                        return Err(self.error("EOF while parsing an object"));
                    }
                    None => return Err(self.error("EOF while parsing a list")),
                }
            }
            return Ok(());
        }
    }
}

#[inline(always)]
fn whitespace_end(buf: &[u8], mut pos: usize) -> usize {
    while let Some(&b) = buf.get(pos) {
        if b > b' ' || !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        pos += 1;
    }
    pos
}

/// The end of the string whose text starts at `pos`, checking its escapes
/// and that it has no control characters; `None` if it is not valid.
#[inline(always)]
fn string_end(buf: &[u8], specials: &mut Specials, mut pos: usize) -> Option<usize> {
    loop {
        pos = specials.find(buf, pos);
        match *buf.get(pos)? {
            b'"' => return Some(pos + 1),
            b'\\' => {
                pos = match *buf.get(pos + 1)? {
                    b'u' => {
                        hex4(buf.get(pos + 2..)?)?;
                        pos + 6
                    }
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => pos + 2,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
}

#[inline(always)]
fn digits_end(buf: &[u8], mut pos: usize) -> usize {
    while buf.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    pos
}

/// The end of the number at `pos`, or `None` if it is not one.
#[inline]
fn number_end(buf: &[u8], mut pos: usize) -> Option<usize> {
    if buf.get(pos) == Some(&b'-') {
        pos += 1;
    }
    match *buf.get(pos)? {
        b'0' => {
            pos += 1;
            if buf.get(pos).is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
        b'1'..=b'9' => pos = digits_end(buf, pos + 1),
        _ => return None,
    }
    if buf.get(pos) == Some(&b'.') {
        let end = digits_end(buf, pos + 1);
        if end == pos + 1 {
            return None;
        }
        pos = end;
    }
    if matches!(buf.get(pos), Some(b'e' | b'E')) {
        pos += 1;
        if matches!(buf.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        let end = digits_end(buf, pos);
        if end == pos {
            return None;
        }
        pos = end;
    }
    Some(pos)
}

#[inline(always)]
fn literal_end(buf: &[u8], pos: usize, word: &[u8]) -> Option<usize> {
    let end = pos + word.len();
    (buf.get(pos..end)? == word).then_some(end)
}

/// The end of the key and colon whose key's text starts at `pos`.
#[inline(always)]
fn key_end(buf: &[u8], specials: &mut Specials, pos: usize) -> Option<usize> {
    let pos = whitespace_end(buf, string_end(buf, specials, pos)?);
    (*buf.get(pos)? == b':').then_some(pos + 1)
}

/// The end of the JSON value at `pos` (after whitespace), or `None` if it
/// is not valid. The hot loop of the reader: everything it keeps is in
/// registers (which containers it is in: a bit each, an object or not, for
/// the first 64 levels, then `deep`) and it only says whether; the slow
/// twin [`Reader::skip_value_slowly`] says why.
fn skip(
    buf: &[u8],
    mut pos: usize,
    deep: &mut Vec<bool>,
    specials: &mut Specials,
) -> Option<usize> {
    let mut depth = 0usize;
    let mut objects = 0u64;
    let push = |deep: &mut Vec<bool>, depth: &mut usize, objects: &mut u64, object: bool| {
        if *depth < 64 {
            *objects |= u64::from(object) << *depth;
        } else {
            deep.push(object);
        }
        *depth += 1;
    };
    'value: loop {
        pos = whitespace_end(buf, pos);
        match *buf.get(pos)? {
            b'"' => pos = string_end(buf, specials, pos + 1)?,
            b'{' => {
                pos = whitespace_end(buf, pos + 1);
                match *buf.get(pos)? {
                    b'}' => pos += 1,
                    b'"' => {
                        push(deep, &mut depth, &mut objects, true);
                        pos = key_end(buf, specials, pos + 1)?;
                        continue 'value;
                    }
                    _ => return None,
                }
            }
            b'[' => {
                pos = whitespace_end(buf, pos + 1);
                if *buf.get(pos)? == b']' {
                    pos += 1;
                } else {
                    push(deep, &mut depth, &mut objects, false);
                    continue 'value;
                }
            }
            b'-' | b'0'..=b'9' => pos = number_end(buf, pos)?,
            b't' => pos = literal_end(buf, pos, b"true")?,
            b'f' => pos = literal_end(buf, pos, b"false")?,
            b'n' => pos = literal_end(buf, pos, b"null")?,
            _ => return None,
        }
        // A value ended: close the containers that end with it.
        while depth > 0 {
            let object = if depth <= 64 {
                objects >> (depth - 1) & 1 == 1
            } else {
                *deep.last()?
            };
            pos = whitespace_end(buf, pos);
            match (*buf.get(pos)?, object) {
                (b',', false) => {
                    pos += 1;
                    continue 'value;
                }
                (b',', true) => {
                    pos = whitespace_end(buf, pos + 1);
                    if *buf.get(pos)? != b'"' {
                        return None;
                    }
                    pos = key_end(buf, specials, pos + 1)?;
                    continue 'value;
                }
                (b'}', true) | (b']', false) => {
                    pos += 1;
                    depth -= 1;
                    if depth < 64 {
                        objects &= !(1 << depth);
                    } else {
                        deep.pop();
                    }
                }
                _ => return None,
            }
        }
        return Some(pos);
    }
}

#[cfg(test)]
mod tests;
