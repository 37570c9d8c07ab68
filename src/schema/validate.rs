//! Checks a YAML tree against the generated schema and reports every structural error
//! (unknown keys, wrong types, missing fields, unknown enum values) at its line, where serde
//! reports only the first. It knows the keywords schemars emits: `$ref`/`$defs`, `type`,
//! `properties`, `additionalProperties`, `required`, `items`, `enum`, `const`, `anyOf`,
//! `oneOf`, `not`, `minimum`.
//!
//! It also says what to cut from the text so that the rest loads: the byte range of each
//! offending entry or list item (or of the smallest enclosing one that is optional), so the
//! semantic checks can still run over everything else.

use std::ops::Range;

use serde_json::Value as Json;

use super::tree::{Node, Value};

/// A structural error: its line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub problems: Vec<Problem>,
    /// Byte ranges to blank out so the rest loads; `None` when the document itself cannot
    /// be made to load (a required top-level field is wrong or missing).
    pub cut: Option<Vec<Range<usize>>>,
}

pub fn validate(root: &Node, schema: &Json, text: &str) -> Outcome {
    let mut v = Validator {
        root: schema,
        text,
        problems: Vec::new(),
        cut: Vec::new(),
    };
    let loads = v.node(root, schema, "");
    Outcome {
        problems: v.problems,
        cut: loads.then_some(v.cut),
    }
}

struct Validator<'s> {
    root: &'s Json,
    text: &'s str,
    problems: Vec<Problem>,
    cut: Vec<Range<usize>>,
}

impl<'s> Validator<'s> {
    fn report(&mut self, line: u64, path: &str, message: String) {
        let message = if path.is_empty() {
            message
        } else {
            format!("{path}: {message}")
        };
        self.problems.push(Problem { line, message });
    }

    /// `#/$defs/Name` references followed to the schema they name.
    fn resolve(&self, mut s: &'s Json) -> &'s Json {
        for _ in 0..32 {
            match s.get("$ref").and_then(Json::as_str) {
                Some(r) => match r
                    .strip_prefix("#/")
                    .map(|p| p.split('/').try_fold(self.root, |at, part| at.get(part)))
                {
                    Some(Some(target)) => s = target,
                    _ => return s,
                },
                None => return s,
            }
        }
        s
    }

    /// Checks `n` against `s`; false when `n` is wrong in a way that its parent must drop it
    /// (or fail itself) for the rest to load.
    fn node(&mut self, n: &Node, s: &'s Json, path: &str) -> bool {
        let s = self.resolve(s);
        if matches!(n.value, Value::Alias) || s == &Json::Bool(true) {
            return true;
        }
        if s == &Json::Bool(false) || s.get("not").is_some_and(|x| x == &serde_json::json!({})) {
            let message = s
                .get("description")
                .and_then(Json::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| "not allowed here".into());
            self.problems.push(Problem {
                line: n.line,
                message,
            });
            return false;
        }
        if let Some(alternatives) = s
            .get("anyOf")
            .or_else(|| s.get("oneOf"))
            .and_then(Json::as_array)
        {
            return self.alternatives(n, s, alternatives, path);
        }
        if let Some(values) = s.get("enum").and_then(Json::as_array) {
            return self.one_of_values(n, values.iter(), path);
        }
        if let Some(value) = s.get("const") {
            return self.one_of_values(n, std::iter::once(value), path);
        }
        let types = types(s);
        if !types.is_empty() && !types.iter().any(|t| fits(n, t)) {
            self.report(
                n.line,
                path,
                format!("invalid type: {}, expected {}", found(n), expected(&types)),
            );
            return false;
        }
        if n.is_null() && types.contains(&"null") {
            return true;
        }
        match &n.value {
            Value::Map(entries) => self.map(n, entries, s, path),
            Value::Seq(items) => {
                let Some(item_schema) = s.get("items") else {
                    return true;
                };
                let mut kept = items.len();
                for (i, item) in items.iter().enumerate() {
                    if !self.node(item, item_schema, &format!("{path}[{i}]")) {
                        self.cut_item(n, item);
                        kept -= 1;
                    }
                }
                // A block list with every item cut would read as null: cut it whole.
                n.flow || kept > 0 || items.is_empty()
            }
            Value::Scalar { text, .. } => {
                let below = s
                    .get("minimum")
                    .and_then(Json::as_f64)
                    .is_some_and(|min| text.trim().parse::<f64>().is_ok_and(|v| v < min));
                if below {
                    self.report(
                        n.line,
                        path,
                        format!(
                            "invalid value: {}, expected a non-negative integer",
                            text.trim()
                        ),
                    );
                    return false;
                }
                true
            }
            Value::Alias => true,
        }
    }

    fn map(&mut self, n: &Node, entries: &[(Node, Node)], s: &'s Json, path: &str) -> bool {
        let properties = s.get("properties").and_then(Json::as_object);
        let additional = s.get("additionalProperties");
        let required: Vec<&str> = s
            .get("required")
            .and_then(Json::as_array)
            .map(|r| r.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        let mut loads = true;
        let mut cut_here = 0;
        for (key, value) in entries {
            let name = key.scalar().unwrap_or_default();
            let child = if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            match (properties.and_then(|p| p.get(name)), additional) {
                (Some(field), _) => {
                    if !self.node(value, field, &child) {
                        if required.contains(&name) {
                            loads = false;
                        } else {
                            self.cut_entry(n, key, value);
                            cut_here += 1;
                        }
                    }
                }
                (None, Some(Json::Bool(false))) => {
                    let known: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    self.report(key.line, path, unknown_field(name, &known));
                    self.cut_entry(n, key, value);
                    cut_here += 1;
                }
                (None, Some(other)) => {
                    if !self.node(value, other, &child) {
                        self.cut_entry(n, key, value);
                        cut_here += 1;
                    }
                }
                (None, None) => {}
            }
        }
        for field in required {
            if !entries.iter().any(|(k, _)| k.scalar() == Some(field)) {
                let mut message = format!("missing field `{field}`");
                if path.is_empty() && field == "version" {
                    message.push_str(": add `version: 1` as the file's first line");
                }
                self.report(n.line, path, message);
                loads = false;
            }
        }
        // A block map with every entry cut would read as null: cut it whole.
        let all_cut = !entries.is_empty() && cut_here == entries.len();
        loads && (n.flow || !all_cut)
    }

    fn one_of_values<'v>(
        &mut self,
        n: &Node,
        values: impl Iterator<Item = &'v Json> + Clone,
        path: &str,
    ) -> bool {
        let text = n.scalar();
        if values
            .clone()
            .any(|v| v.as_str().is_some_and(|v| Some(v) == text))
        {
            return true;
        }
        let names: Vec<String> = values
            .map(|v| format!("`{}`", v.as_str().unwrap_or("")))
            .collect();
        let message = match text {
            // Short words are echoed (`password` for an auth kind); anything longer might
            // be a secret in the wrong place.
            Some(t) if t.len() <= 24 && !t.contains(char::is_whitespace) => format!(
                "unknown variant `{t}`, expected one of {}",
                names.join(", ")
            ),
            Some(_) => format!("unknown value, expected one of {}", names.join(", ")),
            None => format!(
                "invalid type: {}, expected one of {}",
                found(n),
                names.join(", ")
            ),
        };
        self.report(n.line, path, message);
        false
    }

    fn alternatives(&mut self, n: &Node, s: &'s Json, alts: &'s [Json], path: &str) -> bool {
        let alts: Vec<&'s Json> = alts.iter().map(|a| self.resolve(a)).collect();
        if alts.iter().all(|a| a.get("const").is_some()) {
            return self.one_of_values(n, alts.iter().filter_map(|a| a.get("const")), path);
        }
        let candidates: Vec<&'s Json> = alts
            .iter()
            .copied()
            .filter(|a| {
                let t = types(a);
                t.is_empty() || t.iter().any(|t| fits(n, t))
            })
            .collect();
        match candidates.as_slice() {
            [] => {
                let wanted: Vec<&str> = alts.iter().flat_map(|a| types(a)).collect();
                let expected = s
                    .get("description")
                    .and_then(Json::as_str)
                    // A description written as "what: details" says what is wanted, as the
                    // deserializer does; other descriptions are not worded for this.
                    .and_then(|d| d.split_once(": "))
                    .map(|(d, _)| {
                        let mut c = d.chars();
                        c.next()
                            .map(|f| f.to_lowercase().chain(c).collect())
                            .unwrap_or_default()
                    })
                    .unwrap_or_else(|| expected(&wanted));
                self.report(
                    n.line,
                    path,
                    format!("invalid type: {}, expected {expected}", found(n)),
                );
                false
            }
            [one] => self.node(n, one, path),
            several => {
                // The first that fits without a problem; else a summary of what was wanted.
                let (problems, cut) = (self.problems.len(), self.cut.len());
                for a in several {
                    if self.node(n, a, path) && self.problems.len() == problems {
                        return true;
                    }
                    self.problems.truncate(problems);
                    self.cut.truncate(cut);
                }
                let keys: Vec<String> = several
                    .iter()
                    .filter_map(|a| {
                        a.get("required")?.as_array().filter(|r| r.len() == 1)?[0]
                            .as_str()
                            .map(|k| format!("`{k}`"))
                    })
                    .collect();
                let message = if keys.len() == several.len() {
                    format!("expected exactly one of {}", keys.join(", "))
                } else {
                    format!("{} does not match any of the allowed forms", found(n))
                };
                self.report(n.line, path, message);
                false
            }
        }
    }

    /// Blanks a map entry (key and value); in a flow map, with one comma beside it.
    fn cut_entry(&mut self, map: &Node, key: &Node, value: &Node) {
        let range = key.span.start..value.span.end.max(key.span.end);
        let range = if map.flow {
            self.with_comma(range)
        } else {
            range
        };
        self.cut.push(range);
    }

    /// Blanks a list item; in a block list with its `-`, in a flow list with a comma.
    fn cut_item(&mut self, list: &Node, item: &Node) {
        let mut range = item.span.clone();
        if list.flow {
            range = self.with_comma(range);
        } else {
            let before = &self.text[..range.start];
            let trimmed = before.trim_end_matches([' ', '\t']);
            if trimmed.ends_with('-') {
                range.start = trimmed.len() - 1;
            }
        }
        self.cut.push(range);
    }

    fn with_comma(&self, mut range: Range<usize>) -> Range<usize> {
        let after = &self.text[range.end..];
        let gap = after.len() - after.trim_start().len();
        if after[gap..].starts_with(',') {
            range.end += gap + 1;
            return range;
        }
        let before = self.text[..range.start].trim_end();
        if before.ends_with(',') {
            range.start = before.len() - 1;
        }
        range
    }
}

/// The types a schema allows (`"type": "x"` or `["x", "null"]`).
fn types(s: &Json) -> Vec<&str> {
    match s.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether a node can be read as a value of JSON type `t`, as leniently as the YAML
/// deserializer reads it (a scalar is a string; `"5"` an integer).
fn fits(n: &Node, t: &str) -> bool {
    match (&n.value, t) {
        (Value::Alias, _) => true,
        (Value::Map(_), "object") | (Value::Seq(_), "array") => true,
        (Value::Scalar { .. }, "null") => n.is_null(),
        (Value::Scalar { .. }, "string") => !n.is_null(),
        (Value::Scalar { text, .. }, "boolean") => {
            matches!(
                text.trim(),
                "true" | "false" | "True" | "False" | "TRUE" | "FALSE"
            )
        }
        (Value::Scalar { text, .. }, "integer") => {
            let t = text.trim().trim_start_matches('+');
            t.parse::<i64>().is_ok() || t.parse::<u64>().is_ok()
        }
        (Value::Scalar { text, .. }, "number") => {
            text.trim().parse::<f64>().is_ok_and(f64::is_finite)
        }
        _ => false,
    }
}

/// What a node is, never what it says: a secret written in the wrong place must not reach
/// a log through its error (a hot reload logs them).
fn found(n: &Node) -> String {
    let integer = |t: &str| t.trim().parse::<i64>().is_ok();
    match &n.value {
        Value::Scalar { text, .. } if !n.is_null() && fits(n, "boolean") => {
            format!("`{}`", text.trim())
        }
        Value::Scalar { text, .. } if !n.is_null() && integer(text) => "an integer".into(),
        Value::Scalar { .. } if !n.is_null() => "a string".into(),
        _ => n.kind().to_string(),
    }
}

fn expected(types: &[&str]) -> String {
    let names: Vec<&str> = types
        .iter()
        .filter(|t| **t != "null")
        .map(|t| match *t {
            "object" => "a map",
            "array" => "a list",
            "string" => "a string",
            "integer" => "an integer",
            "number" => "a number",
            "boolean" => "true or false",
            other => other,
        })
        .collect();
    if names.is_empty() {
        "nothing (null)".into()
    } else {
        names.join(" or ")
    }
}

/// `unknown field `x``, with the likely intended field when one is close.
fn unknown_field(name: &str, known: &[&str]) -> String {
    let close = known
        .iter()
        .map(|k| (distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min();
    match close {
        Some((_, k)) => format!("unknown field `{name}`, did you mean `{k}`?"),
        None => {
            let names: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            format!(
                "unknown field `{name}`, expected one of {}",
                names.join(", ")
            )
        }
    }
}

/// Levenshtein distance (names are short).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
