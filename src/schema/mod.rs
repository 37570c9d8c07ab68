//! The JSON Schema (draft 2020-12) of the config and the policy (SPEC §2, `scopegate
//! schema`), generated from the serde types the loader reads them with, so it cannot drift
//! from what the loader accepts. Editors use it to complete and check the files; `check`
//! validates against it to report every structural error of a file in one run (`validate`).

mod tree;
mod validate;

use std::ops::Range;
use std::path::Path;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};

use crate::yaml::{FileError, FileErrors};

/// The schema of `T`, titled and described for the editor that shows it.
pub(crate) fn generate<T: JsonSchema>(title: &str, description: &str) -> Schema {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert("title".into(), title.into());
    schema.insert("description".into(), description.into());
    schema
}

/// Every error of a file that serde refused (`refused`, its first error): each structural
/// error `schema` (the file's) finds, then the semantic errors of what remains once the offending
/// entries are cut out (`semantic`, given that text with the same line numbers; it returns
/// no errors when even that text does not load). serde stays the authority: when the
/// schema finds nothing, its error is the answer. Load time only, and only for a file
/// already refused: a file that loads never comes here.
pub fn all_errors(
    file: &Path,
    text: &str,
    schema: Schema,
    refused: FileError,
    semantic: impl FnOnce(&str) -> Vec<FileError>,
) -> FileErrors {
    let Some(tree) = tree::parse(text) else {
        return refused.into();
    };
    let outcome = validate::validate(&tree, &schema.to_value(), text);
    if outcome.problems.is_empty() {
        return refused.into();
    }
    let mut errors: Vec<FileError> = outcome
        .problems
        .into_iter()
        .map(|p| FileError::new(file, p.line, p.message))
        .collect();
    if let Some(cut) = outcome.cut {
        errors.extend(semantic(&blank(text, &cut)));
    }
    errors.sort_by_key(|e| e.line);
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert((e.line, e.message.clone())));
    FileErrors(errors)
}

/// `text` with the given byte ranges replaced by spaces (line breaks kept, so every line
/// keeps its number).
fn blank(text: &str, cut: &[Range<usize>]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for r in cut {
        for b in &mut bytes[r.start.min(text.len())..r.end.min(text.len())] {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
    }
    // Multi-byte characters blanked byte by byte stay valid: every byte became a space.
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    enum Kind {
        Config,
        Policy,
    }

    impl Kind {
        fn schema(self) -> Schema {
            match self {
                Kind::Config => crate::config::schema(),
                Kind::Policy => crate::policy::raw::schema(),
            }
        }
    }

    fn problems(kind: Kind, text: &str) -> validate::Outcome {
        let tree = tree::parse(text).expect("YAML");
        validate::validate(&tree, &kind.schema().to_value(), text)
    }

    /// The structural pass finds nothing in what the loader accepts: no false alarm beside
    /// a real error.
    #[test]
    fn the_shipped_examples_have_no_structural_problem() {
        for (file, kind) in [
            ("policies/example.yaml", Kind::Policy),
            ("policies/idp.yaml", Kind::Policy),
            ("policies/scopegate.yaml", Kind::Config),
        ] {
            let text =
                std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
            let outcome = problems(kind, &text);
            assert_eq!(outcome.problems, [], "{file}");
        }
    }

    /// What is cut leaves text that still parses, every line where it was: entries in the
    /// middle and at the end of flow maps and lists, block entries and list items.
    #[test]
    fn cutting_keeps_the_rest_loadable_and_every_line_in_place() {
        let text = "version: 1\nscopes: { a: x }\nroutes:\n  - { id: r, bad: 1, methods: [GET], path: /r, auth: [jwt, nope] }\n  - { id: s, methods: [GET], path: /s, auth: [nope, jwt], worse: 2 }\n  - id: t\n    methods: GET\n    path: /t\n    auth: [jwt]\napps:\n  - client_id: c\n    algorithms: [HS256]\n    colour: red\n    secret: { value: \"0123456789abcdef0123456789abcdef\" }\n";
        let outcome = problems(Kind::Policy, text);
        assert_eq!(outcome.problems.len(), 6, "{:?}", outcome.problems);
        let rest = blank(text, &outcome.cut.unwrap());
        assert_eq!(rest.lines().count(), text.lines().count());
        let raw: crate::policy::raw::RawPolicy = crate::yaml::parse(Path::new("p.yaml"), &rest)
            .unwrap_or_else(|e| panic!("{e}\n{rest}"));
        let routes: Vec<_> = raw
            .routes
            .iter()
            .map(|r| (r.value.id.as_str(), r.referenced.line()))
            .collect();
        assert_eq!(routes, [("r", 4), ("s", 5)], "{rest}");
        assert_eq!(raw.apps[0].referenced.line(), 11);
    }

    /// Nesting that would take the validator's recursion deep is not followed: the serde
    /// error stands.
    #[test]
    fn deep_nesting_is_left_to_the_loader() {
        let text = format!(
            "version: 1\nscopes: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(tree::parse(&text).is_none());
        let refused = FileError::new(Path::new("p.yaml"), 2, "too deep");
        let errors = all_errors(
            Path::new("p.yaml"),
            &text,
            Kind::Policy.schema(),
            refused.clone(),
            |_| unreachable!(),
        );
        assert_eq!(errors.0, [refused]);
    }
}
