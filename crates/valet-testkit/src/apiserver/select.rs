//! `labelSelector` and `fieldSelector` as the real server parses them.

use serde_json::Value;

use super::wire::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` (equality and set-based) or `fieldSelector`
/// (equality on any dotted path, e.g. `metadata.name`, `spec.nodeName`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Req>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn parse_labels(s: &str) -> Result<Selector, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_label_req(part).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to parse requirement {part:?} in labelSelector {s:?}"
                ))
            })?);
        }
        Ok(Selector { reqs })
    }

    pub fn parse_fields(s: &str) -> Result<Selector, ApiError> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Req::NotEq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Req::Eq(k.trim().to_string(), v.trim().to_string())
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid fieldSelector requirement {part:?}: expected field=value or field!=value"
                )));
            };
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.reqs.iter().all(|r| {
            matches(r, |k| {
                labels.get(k).and_then(Value::as_str).map(str::to_string)
            })
        })
    }

    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.reqs
            .iter()
            .all(|r| matches(r, |path| field_value(obj, path)))
    }
}

fn matches(req: &Req, get: impl Fn(&str) -> Option<String>) -> bool {
    match req {
        Req::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
        Req::NotEq(k, v) => get(k).as_deref() != Some(v.as_str()),
        Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
        Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        Req::Exists(k) => get(k).is_some(),
        Req::NotExists(k) => get(k).is_none(),
    }
}

/// Field values compare as strings; a missing field is "" as in the real
/// server's field sets (so `spec.nodeName=` selects unscheduled pods).
fn field_value(obj: &Value, path: &str) -> Option<String> {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return Some(String::new()),
        }
    }
    Some(match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// Splits on commas that are not inside `( ... )`.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_label_req(part: &str) -> Option<Req> {
    if let Some(key) = part.strip_prefix('!') {
        return Some(Req::NotExists(key.trim().to_string()));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Some(Req::NotEq(k.trim().to_string(), v.trim().to_string()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Some(Req::Eq(k.trim().to_string(), v.trim().to_string()));
    }
    for (op, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = part.split_once(op) {
            let rest = rest.trim();
            let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
            let values = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let k = k.trim().to_string();
            return Some(if notin {
                Req::NotIn(k, values)
            } else {
                Req::In(k, values)
            });
        }
    }
    let key = part.trim();
    if key.contains(char::is_whitespace) {
        None
    } else {
        Some(Req::Exists(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let ok = |s: &str| Selector::parse_labels(s).unwrap().matches_labels(&obj);
        assert!(ok("app=web"));
        assert!(ok("app==web,tier"));
        assert!(!ok("app!=web"));
        assert!(ok("app in (web, db),!missing"));
        assert!(!ok("tier notin (front)"));
        assert!(ok(""));
        assert!(Selector::parse_labels("app in web").is_err());
    }

    #[test]
    fn field_selectors() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}});
        let ok = |s: &str| Selector::parse_fields(s).unwrap().matches_fields(&obj);
        assert!(ok("metadata.name=a,metadata.namespace=ns"));
        assert!(!ok("metadata.name!=a"));
        assert!(ok("spec.nodeName==n1"));
        assert!(ok("status.phase="));
        assert!(Selector::parse_fields("nonsense").is_err());
    }
}
