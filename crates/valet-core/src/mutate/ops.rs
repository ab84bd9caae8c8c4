//! The patch as it is built: `add` operations whose values borrow from the
//! pod, the ServiceAccount and the settings. The webhook writes them straight
//! to JSON ([`write_patch`]); `valet mutate` and the tests turn them into
//! `json_patch` types ([`AddOp::to_operation`]). A property test checks that
//! the two agree on generated pods.

use std::borrow::Cow;
use std::sync::Arc;

use json_patch::{AddOperation, PatchOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

/// One RFC 6902 `add`: its path, already in JSON Pointer form, and value.
#[derive(Clone, Debug, PartialEq)]
pub struct AddOp<'a> {
    pub path: String,
    pub value: Val<'a>,
}

/// A JSON value of the patch (strings, integers, booleans, arrays, objects
/// with fixed keys).
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    Str(Cow<'a, str>),
    /// A string built once for the pod and shared by its containers.
    Shared(Arc<str>),
    Int(i64),
    Bool(bool),
    Arr(Vec<Val<'a>>),
    Obj(Vec<(&'a str, Val<'a>)>),
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(s: &'a str) -> Self {
        Val::Str(Cow::Borrowed(s))
    }
}

impl Val<'_> {
    /// The text of a string value ("" for other kinds).
    pub fn as_str(&self) -> &str {
        match self {
            Val::Str(s) => s,
            Val::Shared(s) => s,
            _ => "",
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Val::Str(s) => Value::from(&**s),
            Val::Shared(s) => Value::from(&**s),
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
            Val::Shared(s) => write_str(out, s),
            Val::Int(i) => {
                use std::io::Write;
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{i}");
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

/// `add` at the JSON Pointer made of `tokens` (escaped as RFC 6901 says).
pub(crate) fn add<'a>(tokens: &[&str], value: Val<'a>) -> AddOp<'a> {
    let mut path = String::with_capacity(tokens.iter().map(|t| t.len() + 1).sum::<usize>() + 2);
    for t in tokens {
        path.push('/');
        if t.contains(['~', '/']) {
            path.push_str(&t.replace('~', "~0").replace('/', "~1"));
        } else {
            path.push_str(t);
        }
    }
    AddOp { path, value }
}

impl AddOp<'_> {
    pub fn to_operation(&self) -> PatchOperation {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::parse(self.path.as_str()).expect("paths are built escaped"),
            value: self.value.to_value(),
        })
    }
}

/// The patch document: `[{"op":"add","path":...,"value":...},...]`.
pub(crate) fn write_patch(ops: &[AddOp<'_>], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"op":"add","path":"#);
        write_str(out, &op.path);
        out.extend_from_slice(br#","value":"#);
        op.value.write(out);
        out.push(b'}');
    }
    out.push(b']');
}

/// A JSON string. Most strings here (names, ARNs, paths) need no escaping
/// and are copied as they are; the rest go through serde_json's escaper.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
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
                    ("shared", Val::Shared("é/ü".into())),
                ])]),
            ),
        ];
        let mut out = Vec::new();
        write_patch(&ops, &mut out);
        let written: json_patch::Patch = serde_json::from_slice(&out).unwrap();
        let typed = json_patch::Patch(ops.iter().map(AddOp::to_operation).collect());
        assert_eq!(written, typed);
        assert_eq!(ops[0].path, "/metadata/annotations/a~1b~0c");
    }
}
