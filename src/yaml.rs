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
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        // The rendered message may quote the offending source line; keep only the first
        // line of the message itself so secrets written inline never reach a log. Its
        // "error: line N column M: " prefix repeats the location the error already has.
        let message = e.to_string();
        let message = message.lines().next().unwrap_or("invalid YAML");
        let mut message = strip_location(message).to_string();
        if message.contains("missing field `version`") {
            message.push_str(": add `version: 1` as the file's first line");
        }
        // Only for text that is not YAML at all; a type error is the deserializer's own.
        let syntax_error =
            || serde_saphyr::granit_parser::Parser::new_from_str(text).any(|event| event.is_err());
        match syntax_error()
            .then(|| syntax::hint(text, line, column, &message))
            .flatten()
        {
            Some((at, hint)) => FileError::new(file, at, format!("{hint} (the parser: {message})")),
            _ => FileError::new(file, line, message),
        }
    })
}

fn strip_location(message: &str) -> &str {
    let Some(rest) = message.strip_prefix("error: line ") else {
        return message;
    };
    match rest.split_once(": ") {
        Some((location, m)) if location.contains(" column ") => m,
        _ => message,
    }
}

/// What a YAML syntax error most likely comes from, found by reading the text up to where
/// the parser gave up: a quote or a bracket opened earlier and never closed (the parser
/// notices only lines later), a tab used for indentation, or an indentation that matches
/// nothing above. The line returned is the cause's, which may precede the parser's.
mod syntax {
    pub fn hint(text: &str, line: u64, column: u64, message: &str) -> Option<(u64, String)> {
        if line == 0 {
            return None;
        }
        let lines: Vec<&str> = text.lines().collect();
        let state = scan(&lines, line, column);
        if let Some((quote, at)) = state.quote {
            return Some((
                at,
                format!("unclosed {quote}: the quoted value opened on line {at} is never closed"),
            ));
        }
        // A bracket still open where the parser stopped is the cause when it opened on an
        // earlier line or the parser says so; not when the parser stopped for another
        // reason inside a flow collection (nesting too deep, say).
        let about_brackets =
            message.contains("bracket") || message.contains("did not find expected");
        if let Some((bracket, at)) = state
            .brackets
            .last()
            .filter(|(_, at)| *at < line || about_brackets)
        {
            let close = if *bracket == '[' { ']' } else { '}' };
            return Some((
                *at,
                format!(
                    "unclosed `{bracket}`: the `{bracket}` on line {at} is never closed with `{close}`"
                ),
            ));
        }
        let indent = |l: &str| l.len() - l.trim_start().len();
        // The parser may stop at the end of the line before the tab (a plain value that
        // could go on).
        let tab = (line..=line + 1).find(|n| {
            lines
                .get(*n as usize - 1)
                .is_some_and(|l| l[..indent(l)].contains('\t'))
        });
        if let Some(at) = tab {
            return Some((
                at,
                "a tab indents this line: YAML indents with spaces only".into(),
            ));
        }
        let here = lines.get(line as usize - 1)?;
        let above = lines[..line as usize - 1]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
        let (mine, mut theirs) = (indent(here), indent(above));
        // An entry of the same map lines up with the one above (with the text after its
        // `- `, in a list item); one indented deeper after a complete `key: value` line
        // belongs nowhere.
        if above.trim_start().starts_with("- ") {
            theirs += 2;
        }
        let aligned = mine == theirs;
        let opens = above.trim_end().ends_with(':') || above.trim_end().ends_with('-');
        let fits = aligned || (opens && mine > theirs);
        (!fits && here.contains(':')).then(|| {
            (
                line,
                format!(
                    "bad indentation: this line is indented by {mine} spaces, the entry above by {theirs}"
                ),
            )
        })
    }

    struct State {
        /// An open quote: "`\"`" or "`'`", and its line.
        quote: Option<(&'static str, u64)>,
        /// Open flow brackets and their lines.
        brackets: Vec<(char, u64)>,
    }

    /// The lexical state at `line`:`column` (1-based, the character there included: the
    /// parser points at a bracket it cannot match): enough of YAML to know quotes, comments
    /// and flow brackets.
    fn scan(lines: &[&str], line: u64, column: u64) -> State {
        let mut state = State {
            quote: None,
            brackets: Vec::new(),
        };
        for (i, text) in lines.iter().enumerate().take(line as usize) {
            let n = i as u64 + 1;
            let chars: Vec<char> = text.chars().collect();
            let end = if n == line {
                (column as usize).min(chars.len())
            } else {
                chars.len()
            };
            let mut j = 0;
            while j < end {
                let c = chars[j];
                match state.quote {
                    Some((q, _)) => {
                        if q == "`\"`" && c == '\\' {
                            j += 1;
                        } else if q == "`\"`" && c == '"' {
                            state.quote = None;
                        } else if q == "`'`" && c == '\'' {
                            if chars.get(j + 1) == Some(&'\'') {
                                j += 1;
                            } else {
                                state.quote = None;
                            }
                        }
                    }
                    None => {
                        let before = chars[..j].iter().rev().find(|c| !c.is_whitespace());
                        let token_start =
                            matches!(before, None | Some(':' | '-' | '[' | '{' | ',' | '?'));
                        match c {
                            '#' if j == 0 || chars[j - 1].is_whitespace() => break,
                            '"' if token_start => state.quote = Some(("`\"`", n)),
                            '\'' if token_start => state.quote = Some(("`'`", n)),
                            '[' | '{' if token_start || !state.brackets.is_empty() => {
                                state.brackets.push((c, n))
                            }
                            ']' | '}' if !state.brackets.is_empty() => {
                                let open = if c == ']' { '[' } else { '{' };
                                if state.brackets.last().map(|b| b.0) != Some(open) {
                                    // Closed by the wrong bracket: the open one is the cause.
                                    return state;
                                }
                                state.brackets.pop();
                            }
                            _ => {}
                        }
                    }
                }
                j += 1;
            }
        }
        state
    }
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
