//! A position tree of a YAML document: where every node starts and ends,
//! so that errors found after deserialization can name a line and column,
//! and a job's original text can be cut out of the file.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// One YAML node with its position and byte range in the source.
#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    /// Byte offset of the node's first character.
    pub start: usize,
    /// Byte offset just after the node's last content character.
    pub end: usize,
    /// 0-based column of the node's first character.
    pub col0: usize,
    /// Whether an alias occurs inside (then the text cannot stand alone).
    pub has_alias: bool,
    /// Nodes in this subtree (itself included), to bound alias expansion.
    pub size: usize,
    pub kind: Kind,
}

/// Deeper documents get no position tree (recursion on it would risk the
/// stack); the deserializer still reports their errors.
const MAX_DEPTH: usize = 256;
/// Bound on nodes including alias expansions ("billion laughs").
const MAX_NODES: usize = 1_000_000;

#[derive(Clone, Debug)]
pub enum Kind {
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys with their positions, in document order.
    Map(Vec<(String, Pos, Node)>),
}

/// One step of a path into the tree.
#[derive(Clone, Copy, Debug)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl Node {
    /// The node at `path`, or the deepest existing ancestor on it.
    pub fn locate(&self, path: &[Step<'_>]) -> &Node {
        let mut node = self;
        for step in path {
            let next = match (step, &node.kind) {
                (Step::Key(k), Kind::Map(entries)) => {
                    entries.iter().find(|(key, _, _)| key == k).map(|e| &e.2)
                }
                (Step::Index(i), Kind::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// Where an error about `path` should point: the key when the path
    /// ends with a key that exists, else the node (or nearest ancestor).
    pub fn locate_pos(&self, path: &[Step<'_>]) -> Pos {
        if let Some((Step::Key(k), parent)) = path.split_last() {
            let p = self.locate(parent);
            if let Kind::Map(entries) = &p.kind
                && let Some((_, kpos, _)) = entries.iter().find(|(key, _, _)| key == k)
            {
                return *kpos;
            }
            // The parent exists but lacks the key: point at the parent.
            return p.pos;
        }
        self.locate(path).pos
    }

    /// The position of the first mapping key named `key` at or after
    /// `from`, in document order.
    pub fn find_key_after(&self, key: &str, from: Pos) -> Option<Pos> {
        let after = |p: Pos| (p.line, p.column) >= (from.line, from.column);
        match &self.kind {
            Kind::Scalar { .. } => None,
            Kind::Seq(items) => items.iter().find_map(|n| n.find_key_after(key, from)),
            Kind::Map(entries) => entries.iter().find_map(|(k, kpos, v)| {
                if k == key && after(*kpos) {
                    Some(*kpos)
                } else {
                    v.find_key_after(key, from)
                }
            }),
        }
    }

    /// The node's text as written, re-indented to stand alone. When it uses
    /// aliases (whose anchors live elsewhere), a flow rendering of the
    /// resolved node instead.
    pub fn standalone_text(&self, src: &str) -> String {
        if self.has_alias {
            let mut out = String::new();
            self.emit_flow(&mut out);
            out.push('\n');
            return out;
        }
        let Some(slice) = src.get(self.start..self.end) else {
            let mut out = String::new();
            self.emit_flow(&mut out);
            return out;
        };
        let mut out = String::with_capacity(slice.len() + 1);
        for (i, line) in slice.split('\n').enumerate() {
            if i == 0 {
                out.push_str(line);
            } else {
                out.push('\n');
                let strip = line
                    .bytes()
                    .take(self.col0)
                    .take_while(|b| *b == b' ')
                    .count();
                out.push_str(&line[strip..]);
            }
        }
        out.push('\n');
        out
    }

    fn emit_flow(&self, out: &mut String) {
        match &self.kind {
            Kind::Scalar { value, plain } => {
                let safe_plain = *plain
                    && !value.is_empty()
                    && !value.contains(|c: char| ",[]{}#:\"'\n".contains(c));
                if safe_plain {
                    out.push_str(value);
                } else if *plain && value.is_empty() {
                    out.push_str("null");
                } else {
                    out.push_str(&serde_json::Value::String(value.clone()).to_string());
                }
            }
            Kind::Seq(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.emit_flow(out);
                }
                out.push(']');
            }
            Kind::Map(entries) => {
                out.push('{');
                for (i, (k, _, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    Node {
                        kind: Kind::Scalar {
                            value: k.clone(),
                            plain: true,
                        },
                        ..v.clone()
                    }
                    .emit_flow(out);
                    out.push_str(": ");
                    v.emit_flow(out);
                }
                out.push('}');
            }
        }
    }
}

enum Frame {
    Seq(Node),
    Map(Node, Option<(String, Pos)>),
}

/// Builds the tree of the first document; `None` if the text does not
/// parse (the deserializer reports that error with its position).
pub fn parse(src: &str) -> Option<Node> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut anchor_of: Vec<usize> = Vec::new();
    let mut root: Option<Node> = None;
    let mut nodes: usize = 0;
    for ev in Parser::new_from_str(src) {
        let (event, span) = ev.ok()?;
        let pos = Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        let start = span.start.byte_offset().unwrap_or(0);
        let end = span.end.byte_offset().unwrap_or(start);
        let new_node = |kind| Node {
            pos,
            start,
            end,
            col0: span.start.col(),
            has_alias: false,
            size: 1,
            kind,
        };
        let done: Node = match event {
            Event::Scalar(value, style, anchor, _) => {
                let n = new_node(Kind::Scalar {
                    value: value.into_owned(),
                    plain: style == ScalarStyle::Plain,
                });
                if anchor != 0 {
                    anchors.insert(anchor, n.clone());
                }
                n
            }
            Event::Alias(id) => {
                let anchored = anchors.get(&id)?;
                nodes = nodes.saturating_add(anchored.size);
                if nodes > MAX_NODES {
                    return None;
                }
                let mut n = anchored.clone();
                n.pos = pos;
                n.start = start;
                n.end = end;
                n.col0 = span.start.col();
                n.has_alias = true;
                n
            }
            Event::SequenceStart(_, anchor, _) => {
                anchor_of.push(anchor);
                if stack.len() >= MAX_DEPTH {
                    return None;
                }
                stack.push(Frame::Seq(new_node(Kind::Seq(Vec::new()))));
                continue;
            }
            Event::MappingStart(_, anchor, _) => {
                anchor_of.push(anchor);
                if stack.len() >= MAX_DEPTH {
                    return None;
                }
                stack.push(Frame::Map(new_node(Kind::Map(Vec::new())), None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let mut n = match stack.pop()? {
                    Frame::Seq(n) | Frame::Map(n, _) => n,
                };
                // A flow collection ends with its bracket; a block one with
                // its last child.
                if src.as_bytes().get(end.saturating_sub(1)).copied() == Some(b']')
                    || src.as_bytes().get(end.saturating_sub(1)).copied() == Some(b'}')
                {
                    n.end = n.end.max(end);
                }
                let anchor = anchor_of.pop().unwrap_or(0);
                if anchor != 0 {
                    anchors.insert(anchor, n.clone());
                }
                n
            }
            Event::DocumentEnd => {
                if root.is_some() {
                    break;
                }
                continue;
            }
            _ => continue,
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return None;
        }
        match stack.last_mut() {
            None => root = Some(done),
            Some(Frame::Seq(parent)) => {
                parent.end = parent.end.max(done.end);
                parent.has_alias |= done.has_alias;
                parent.size = parent.size.saturating_add(done.size);
                if let Kind::Seq(items) = &mut parent.kind {
                    items.push(done);
                }
            }
            Some(Frame::Map(parent, pending)) => {
                parent.end = parent.end.max(done.end);
                parent.has_alias |= done.has_alias;
                parent.size = parent.size.saturating_add(done.size);
                match pending.take() {
                    None => {
                        let key = match &done.kind {
                            Kind::Scalar { value, .. } => value.clone(),
                            _ => String::new(),
                        };
                        *pending = Some((key, done.pos));
                    }
                    Some((key, kpos)) => {
                        if let Kind::Map(entries) = &mut parent.kind {
                            entries.push((key, kpos, done));
                        }
                    }
                }
            }
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_on_deep_or_exploding_documents() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_none());
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            laughs.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&laughs).is_none());
    }

    #[test]
    fn locates_nodes_and_cuts_items() {
        let src = "a:\n  - x: 1\n    y: [2]  # c\n  - z\nb: 1\n";
        let root = parse(src).unwrap();
        let item = root.locate(&[Step::Key("a"), Step::Index(0)]);
        assert_eq!(item.pos, Pos { line: 2, column: 5 });
        assert_eq!(item.standalone_text(src), "x: 1\ny: [2]\n");
        let y = root.locate(&[Step::Key("a"), Step::Index(0), Step::Key("y")]);
        assert_eq!(y.pos.line, 3);
        let missing = root.locate(&[Step::Key("a"), Step::Index(7)]);
        assert_eq!(missing.pos.line, 2);
    }

    #[test]
    fn aliases_render_resolved() {
        let src = "base: &b {x: 1}\nl:\n- <<: *b\n  y: \"q:r\"\n";
        let root = parse(src).unwrap();
        let item = root.locate(&[Step::Key("l"), Step::Index(0)]);
        assert!(item.has_alias);
        assert_eq!(item.standalone_text(src), "{<<: {x: 1}, y: \"q:r\"}\n");
    }
}
