//! A YAML document as a tree of nodes that know where they are (line, byte range), for the
//! structural pass of `check` (`validate`): serde stops at the first error, this tree lets
//! every error of the file be found. Read only when a file has already been refused.

use std::borrow::Cow;
use std::ops::Range;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, StructureStyle};

#[derive(Debug)]
pub struct Node<'a> {
    pub value: Value<'a>,
    pub line: u64,
    /// Bytes of the source the node covers (a flow collection with its brackets; a block
    /// collection from its first entry to the end of its last).
    pub span: Range<usize>,
    pub flow: bool,
}

#[derive(Debug)]
pub enum Value<'a> {
    Scalar {
        text: Cow<'a, str>,
        plain: bool,
    },
    Seq(Vec<Node<'a>>),
    Map(Vec<(Node<'a>, Node<'a>)>),
    /// An alias: what it stands for is not followed.
    Alias,
}

impl Node<'_> {
    /// What a schema's `type` would call it, for messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar { .. } if self.is_null() => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
            Value::Alias => "an alias",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// Deeper than any config or policy goes; the validator recurses once per level, so a
/// hostile file nested thousands deep is left to the serde error it already has.
const MAX_DEPTH: usize = 64;

/// The first document of `text`; `None` when the YAML itself does not parse (the serde error
/// then says why).
pub fn parse(text: &str) -> Option<Node<'_>> {
    let offsets = Offsets::new(text);
    let mut stack: Vec<Node> = Vec::new();
    // A map's key waiting for its value, per open map.
    let mut keys: Vec<Option<Node>> = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.ok()?;
        let start = offsets.byte(span.start.byte_offset(), span.start.index());
        let end = offsets.byte(span.end.byte_offset(), span.end.index());
        let line = span.start.line() as u64;
        let node = match event {
            Event::Scalar(text, style, ..) => Node {
                value: Value::Scalar {
                    text,
                    plain: style == ScalarStyle::Plain,
                },
                line,
                span: start..end,
                flow: false,
            },
            Event::Alias(_) => Node {
                value: Value::Alias,
                line,
                span: start..end,
                flow: false,
            },
            Event::SequenceStart(style, ..) | Event::MappingStart(style, ..) => {
                if stack.len() >= MAX_DEPTH {
                    return None;
                }
                let map = matches!(event, Event::MappingStart(..));
                stack.push(Node {
                    value: if map {
                        Value::Map(Vec::new())
                    } else {
                        Value::Seq(Vec::new())
                    },
                    line,
                    span: start..start,
                    flow: style == StructureStyle::Flow,
                });
                keys.push(None);
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                keys.pop();
                let mut node = stack.pop()?;
                if node.flow {
                    node.span.end = end;
                }
                node
            }
            Event::DocumentEnd if stack.is_empty() => break,
            _ => continue,
        };
        let Some(parent) = stack.last_mut() else {
            return Some(node);
        };
        parent.span.end = parent.span.end.max(node.span.end);
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => {
                let key = keys.last_mut()?;
                match key.take() {
                    Some(k) => entries.push((k, node)),
                    None => *key = Some(node),
                }
            }
            _ => return None,
        }
    }
    None
}

/// Byte offsets from the parser's markers (which count characters, and bytes when they can).
struct Offsets {
    /// Byte offset of each character, only for text that is not ASCII.
    chars: Option<Vec<usize>>,
    len: usize,
}

impl Offsets {
    fn new(text: &str) -> Offsets {
        Offsets {
            chars: (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect()),
            len: text.len(),
        }
    }

    fn byte(&self, byte: Option<usize>, char_index: usize) -> usize {
        match (byte, &self.chars) {
            (Some(b), _) => b,
            (None, None) => char_index,
            (None, Some(c)) => c.get(char_index).copied().unwrap_or(self.len),
        }
    }
}
