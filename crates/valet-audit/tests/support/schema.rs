//! A JSON Schema validator for the subset `audit-schema.json` uses: type
//! (one or a list), enum, properties, required, additionalProperties (false
//! or a schema), items, `$ref` to `#/$defs/NAME`.

use serde_json::Value;

pub fn validate(schema_root: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema_root, schema_root, value, "$", &mut errors);
    errors
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("schema uses unsupported type {other}"),
    }
}

fn check(root: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("only #/$defs/ refs");
        let target = &root["$defs"][name];
        assert!(!target.is_null(), "schema $ref {r} is not defined");
        return check(root, target, v, at, errors);
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type in schema at {at}"),
        };
        if !types.iter().any(|t| type_matches(t, v)) {
            errors.push(format!("{at}: {v} is not of type {types:?}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let req = req.as_str().expect("required names are strings");
            if !obj.contains_key(req) {
                errors.push(format!("{at}: missing required {req}"));
            }
        }
        for (k, child) in obj {
            let path = format!("{at}.{k}");
            match (
                props.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => check(root, s, child, &path, errors),
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{path}: not in the schema"))
                }
                (None, Some(s @ Value::Object(_))) => check(root, s, child, &path, errors),
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, child) in arr.iter().enumerate() {
            check(root, items, child, &format!("{at}[{i}]"), errors);
        }
    }
}
