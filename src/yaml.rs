//! YAML loading with errors that name `file:line`, shared by the config and the policy.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A problem in an operator's file, located as precisely as the parser or the validator can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    pub line: u64,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

impl FileError {
    pub fn new(file: &Path, line: u64, message: impl Into<String>) -> FileError {
        FileError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// All errors of one load, in file order, so `check` can print every one of them at once.
#[derive(Debug, Clone, Default)]
pub struct FileErrors(pub Vec<FileError>);

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileErrors {}

impl From<FileError> for FileErrors {
    fn from(e: FileError) -> Self {
        FileErrors(vec![e])
    }
}

pub fn read(file: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(file).map_err(|e| FileError::new(file, 0, format!("cannot read: {e}")))
}

/// Parses YAML text; unknown keys are rejected by the types (`deny_unknown_fields`).
pub fn parse<'a, T: Deserialize<'a>>(file: &Path, text: &'a str) -> Result<T, FileError> {
    serde_saphyr::from_str_with_options::<T>(text, options()).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(0);
        // The rendered message may quote the offending source line; keep only the first
        // line of the message itself so secrets written inline never reach a log.
        let message = e.to_string();
        let mut message = message.lines().next().unwrap_or("invalid YAML").to_string();
        if message.contains("missing field `version`") {
            message.push_str(": add `version: 1` as the file's first line");
        }
        FileError::new(file, line, message)
    })
}

/// The parser's defaults guard against hostile YAML (alias bombs, deep nesting) but cap a
/// document at 250,000 nodes, below a policy with 100,000 API keys. Files here come from
/// the operator, so the size caps are raised while the alias and depth guards stay.
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 50_000_000;
    budget.max_events = 100_000_000;
    budget.max_total_scalar_bytes = 512 * 1024 * 1024;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.emit_comments = false;
    options
}

/// Resolves `p` against the directory of the file that names it (SPEC §1.1).
pub fn resolve(base_file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// How a duration is written, for the JSON Schema: the field types hold a `Duration`, read
/// by `duration` below.
pub struct DurationText;

impl schemars::JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration: 250ms, 10s, 5m, 1h, 24h.",
            "examples": ["250ms", "30s", "5m"]
        })
    }
}

/// Durations are written `250ms`, `10s`, `5m`. Written back only for the schema, whose
/// defaults then read as the files do (`10s`, not a number of nanoseconds).
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }

    pub mod option {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }
    }
}
