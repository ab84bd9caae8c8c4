//! The patch as it is built: `add` operations whose values borrow from the
//! pod, the ServiceAccount and the settings. The webhook writes them straight
//! to JSON ([`write_patch`]); `valet mutate` and the tests turn them into
//! `json_patch` types ([`AddOp::to_operation`]). A property test checks that
//! the two agree on generated pods.

use std::sync::Arc;

use json_patch::{AddOperation, PatchOperation};
use jsonptr::{PointerBuf, Token};
use serde_json::Value;

/// One RFC 6902 `add`: its path and value.
#[derive(Clone, Debug, PartialEq)]
pub struct AddOp<'a> {
    pub path: Path<'a>,
    pub value: Val<'a>,
}

/// One reference token of a [`Path`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tok<'a> {
    Key(&'a str),
    Index(usize),
    /// `-`: the end of an array (RFC 6902 append).
    End,
}

/// The deepest path the patch writes: `/spec/containers/<i>/env/-`.
const MAX_DEPTH: usize = 5;

/// A JSON Pointer of at most [`MAX_DEPTH`] tokens, kept unescaped and
/// unallocated: it is escaped (RFC 6901) only when written.
#[derive(Clone, Copy, PartialEq)]
pub struct Path<'a> {
    toks: [Tok<'a>; MAX_DEPTH],
    len: usize,
}

impl<'a> Path<'a> {
    pub(crate) fn new(keys: &[&'a str]) -> Path<'a> {
        let mut p = Path {
            toks: [Tok::End; MAX_DEPTH],
            len: 0,
        };
        for k in keys {
            p.push(Tok::Key(k));
        }
        p
    }

    fn push(&mut self, tok: Tok<'a>) {
        // The patch's paths are fixed by this module, never by input.
        assert!(self.len < MAX_DEPTH, "patch path deeper than {MAX_DEPTH}");
        self.toks[self.len] = tok;
        self.len += 1;
    }

    pub(crate) fn with(mut self, tok: Tok<'a>) -> Path<'a> {
        self.push(tok);
        self
    }

    pub fn tokens(&self) -> &[Tok<'a>] {
        &self.toks[..self.len]
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        for t in self.tokens() {
            out.push(b'/');
            match t {
                Tok::Key(k) if !k.bytes().any(|b| b == b'~' || b == b'/') => write_str_body(out, k),
                Tok::Key(k) => {
                    for part in k.split_inclusive(['~', '/']) {
                        if let Some(text) = part.strip_suffix('~') {
                            write_str_body(out, text);
                            out.extend_from_slice(b"~0");
                        } else if let Some(text) = part.strip_suffix('/') {
                            write_str_body(out, text);
                            out.extend_from_slice(b"~1");
                        } else {
                            write_str_body(out, part);
                        }
                    }
                }
                Tok::Index(i) => write_int(out, *i as i64),
                Tok::End => out.push(b'-'),
            }
        }
        out.push(b'"');
    }
}

impl std::fmt::Display for Path<'_> {
    /// The pointer as RFC 6901 text, e.g. `/metadata/annotations/a~1b`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for t in self.tokens() {
            match t {
                Tok::Key(k) => write!(f, "/{}", k.replace('~', "~0").replace('/', "~1"))?,
                Tok::Index(i) => write!(f, "/{i}")?,
                Tok::End => f.write_str("/-")?,
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// A JSON value of the patch (strings, integers, booleans, arrays, objects
/// with fixed keys).
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    Str(Text<'a>),
    Int(i64),
    Bool(bool),
    Arr(Vec<Val<'a>>),
    Obj(Vec<(&'a str, Val<'a>)>),
    /// An env var, `{"name": .., "value": ..}`: the patch's most common
    /// value, kept without an allocation of its own.
    Env(&'a str, Text<'a>),
}

/// A string value: borrowed from the pod, the ServiceAccount or the
/// settings, or built once for the pod and shared by its containers.
#[derive(Clone, Debug, PartialEq)]
pub enum Text<'a> {
    Borrowed(&'a str),
    Shared(Arc<str>),
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Shared(s) => s,
        }
    }
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(s: &'a str) -> Self {
        Val::Str(Text::Borrowed(s))
    }
}

impl Val<'_> {
    /// The text of a string value ("" for other kinds).
    pub fn as_str(&self) -> &str {
        match self {
            Val::Str(s) => s,
            _ => "",
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Val::Env(name, value) => serde_json::json!({"name": name, "value": &**value}),
            Val::Str(s) => Value::from(&**s),
            Val::Int(i) => Value::from(*i),
            Val::Bool(b) => Value::from(*b),
            Val::Arr(items) => Value::Array(items.iter().map(Val::to_value).collect()),
            Val::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Val::Str(s) => write_str(out, s),
            Val::Int(i) => write_int(out, *i),
            Val::Env(name, value) => {
                out.extend_from_slice(br#"{"name":"#);
                write_str(out, name);
                out.extend_from_slice(br#","value":"#);
                write_str(out, value);
                out.push(b'}');
            }
            Val::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Val::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Val::Obj(fields) => {
                out.push(b'{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, k);
                    out.push(b':');
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// An object with the given fields, in the given order.
pub(crate) fn obj<'a, const N: usize>(fields: [(&'a str, Val<'a>); N]) -> Val<'a> {
    Val::Obj(fields.into())
}

/// `add` at the JSON Pointer made of `keys`.
pub(crate) fn add<'a>(keys: &[&'a str], value: Val<'a>) -> AddOp<'a> {
    AddOp {
        path: Path::new(keys),
        value,
    }
}

/// `add` at `path`.
pub(crate) fn add_at<'a>(path: Path<'a>, value: Val<'a>) -> AddOp<'a> {
    AddOp { path, value }
}

impl AddOp<'_> {
    pub fn to_operation(&self) -> PatchOperation {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(self.path.tokens().iter().map(|t| match t {
                Tok::Key(k) => Token::new(*k),
                Tok::Index(i) => Token::new(i.to_string()),
                Tok::End => Token::new("-"),
            })),
            value: self.value.to_value(),
        })
    }
}

/// The patch document: `[{"op":"add","path":...,"value":...},...]`.
pub(crate) fn write_patch(ops: &[AddOp<'_>], out: &mut Vec<u8>) {
    // Most ops are an env var of ~100 bytes: one allocation in the common case.
    out.reserve(ops.len() * 128);
    out.push(b'[');
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"op":"add","path":"#);
        op.path.write(out);
        out.extend_from_slice(br#","value":"#);
        op.value.write(out);
        out.push(b'}');
    }
    out.push(b']');
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    // Digits backwards into a buffer: no formatting machinery per number.
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = i.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[at..]);
}

/// A JSON string. Most strings here (names, ARNs, paths) need no escaping
/// and are copied as they are; the rest go through serde_json's escaper.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_str_body(out, s);
    out.push(b'"');
}

/// The inside of a JSON string, escaped as serde_json escapes.
fn write_str_body(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        let mut quoted = Vec::with_capacity(s.len() + 8);
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut quoted, s);
        out.extend_from_slice(&quoted[1..quoted.len() - 1]);
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Whether any byte is a control character, `"` or `\`; eight bytes at a
/// time (this scan runs over every string of every patch).
fn needs_escape(bytes: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero iff the matching high bit of `zero(x)` is set
    // (no false positives once `& !x` masks bytes >= 0x80).
    let has = |x: u64, b: u8| {
        let y = x ^ (LO * b as u64);
        y.wrapping_sub(LO) & !y & HI != 0
    };
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Bytes < 0x20: subtracting 0x20 borrows into the high bit for them.
        let control = x.wrapping_sub(LO * 0x20) & !x & HI != 0;
        if control || has(x, b'"') || has(x, b'\\') {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_patch_is_the_typed_patch() {
        let ops = vec![
            add(
                &["metadata", "annotations", "a/b~c"],
                Val::from("quote \" back \\ nl \n"),
            ),
            add(
                &["spec", "volumes"],
                Val::Arr(vec![obj([
                    ("name", Val::from("v")),
                    ("readOnly", Val::Bool(true)),
                    ("n", Val::Int(-3600)),
                    ("shared", Val::Str(Text::Shared("é/ü".into()))),
                ])]),
            ),
        ];
        let mut out = Vec::new();
        write_patch(&ops, &mut out);
        let written: json_patch::Patch = serde_json::from_slice(&out).unwrap();
        let typed = json_patch::Patch(ops.iter().map(AddOp::to_operation).collect());
        assert_eq!(written, typed);
        assert_eq!(ops[0].path.to_string(), "/metadata/annotations/a~1b~0c");
    }

    #[test]
    fn escape_scan_finds_every_byte_that_needs_escaping_at_every_offset() {
        let naive = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        for len in 1..=20 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    // Multi-byte UTF-8 lead/continuation bytes are probed as
                    // raw bytes: the scan works on bytes.
                    let mut v = vec![b'a'; len];
                    v[at] = byte;
                    assert_eq!(
                        needs_escape(&v),
                        naive(&v),
                        "byte {byte:#x} at {at} of {len}"
                    );
                    // Neighbours that could borrow into or out of the byte.
                    v.iter_mut()
                        .enumerate()
                        .filter(|(i, _)| *i != at)
                        .for_each(|(_, c)| *c = 0xff);
                    assert_eq!(needs_escape(&v), naive(&v), "byte {byte:#x} among 0xff");
                    v.iter_mut()
                        .enumerate()
                        .filter(|(i, _)| *i != at)
                        .for_each(|(_, c)| *c = 0x20);
                    assert_eq!(needs_escape(&v), naive(&v), "byte {byte:#x} among spaces");
                }
            }
        }
    }

    #[test]
    fn written_integers_equal_serde_json() {
        for i in [0, 7, -7, 10, 3600, -86400, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_int(&mut out, i);
            assert_eq!(out, serde_json::to_vec(&i).unwrap(), "{i}");
        }
    }

    #[test]
    fn written_strings_equal_serde_json() {
        for s in [
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\n",
            "\u{1}x",
            "é/ü~",
            "",
            "0123456789abcdef\t",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
