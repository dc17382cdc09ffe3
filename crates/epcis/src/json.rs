//! A small strict JSON reader (RFC 8259) producing an order-preserving tree.
//!
//! `serde_json::Value` cannot serve the event hash on its own: it sorts object keys (the hash
//! keeps the received order of a business transaction's `type` and id), keeps only the last of
//! duplicate keys, and turns `12.10` into an `f64` whose decimal text is gone (sensor values and
//! the hash need the digits as written). So documents are read once into [`Node`], which keeps
//! key order and each number's text, and refuses duplicate keys, over-deep nesting and anything
//! that is not strict JSON. The `serde_json::Value` handed to callers and to the schema validator
//! is built from it.

use serde_json::{Map, Number, Value};

use crate::EpcisError;

/// The largest document accepted, in bytes.
pub const DOCUMENT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The deepest nesting of arrays and objects accepted (the document object is depth 1). The
/// deepest standard EPCIS structure (a sensor report in a query document) is under 10.
pub const DEPTH_MAX: usize = 64;

/// A JSON value as written: object members in document order, numbers as their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    /// The number exactly as written (it matched the JSON number grammar).
    Number(String),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    /// The member `key` of an object (`None` for other kinds or a missing key).
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(members) => members
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(text) => Some(text),
            _ => None,
        }
    }

    /// The elements of an array; a single value reads as a one-element list, absence as none.
    pub(crate) fn items(&self) -> &[Node] {
        match self {
            Node::Array(items) => items,
            other => std::slice::from_ref(other),
        }
    }

    /// The node of a `serde_json::Value`. Numbers are read from serde_json's text for them,
    /// which for a decimal is the shortest text naming the same double.
    pub(crate) fn from_value(value: &Value) -> Node {
        match value {
            Value::Null => Node::Null,
            Value::Bool(flag) => Node::Bool(*flag),
            Value::Number(number) => Node::Number(number.to_string()),
            Value::String(text) => Node::String(text.clone()),
            Value::Array(items) => Node::Array(items.iter().map(Node::from_value).collect()),
            Value::Object(map) => Node::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), Node::from_value(value)))
                    .collect(),
            ),
        }
    }

    /// Builds the `serde_json::Value` of this node. Numbers go through serde_json's own parser,
    /// so they read exactly as `serde_json::from_slice` would have read them.
    pub(crate) fn to_value(&self) -> Result<Value, String> {
        Ok(match self {
            Node::Null => Value::Null,
            Node::Bool(flag) => Value::Bool(*flag),
            Node::Number(text) => Value::Number(
                text.parse::<Number>()
                    .map_err(|_| format!("number {text} is out of range"))?,
            ),
            Node::String(text) => Value::String(text.clone()),
            Node::Array(items) => Value::Array(
                items
                    .iter()
                    .map(Node::to_value)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Node::Object(members) => {
                let mut map = Map::new();
                for (key, value) in members {
                    map.insert(key.clone(), value.to_value()?);
                }
                Value::Object(map)
            }
        })
    }
}

/// At most this many repeated keys are reported.
const DUPLICATES_MAX: usize = 50;

/// Reads one JSON value filling all of `bytes` (surrounding whitespace allowed). Returns it with
/// the JSON pointers of object members whose key appeared more than once in the same object
/// (the last occurrence is kept, as serde_json and most JSON readers do).
pub(crate) fn parse(bytes: &[u8]) -> Result<(Node, Vec<String>), EpcisError> {
    if bytes.len() > DOCUMENT_BYTES_MAX {
        return Err(EpcisError::TooLarge {
            got: bytes.len(),
            max: DOCUMENT_BYTES_MAX,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let (line, column) = position(bytes, error.valid_up_to());
        EpcisError::Json {
            line,
            column,
            reason: "invalid UTF-8".to_owned(),
        }
    })?;
    let mut reader = Reader {
        bytes: text.as_bytes(),
        at: 0,
        path: Vec::new(),
        duplicates: Vec::new(),
    };
    reader.skip_whitespace();
    let node = reader.value(1)?;
    reader.skip_whitespace();
    if reader.at != reader.bytes.len() {
        return Err(reader.error("trailing characters after the JSON value"));
    }
    Ok((node, reader.duplicates))
}

/// The 1-based line and column of byte `offset` (columns count bytes).
fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    (line, before.len() - line_start + 1)
}

struct Reader<'a> {
    /// Valid UTF-8 (checked before reading), so slicing at ASCII delimiters is sound.
    bytes: &'a [u8],
    at: usize,
    /// Where the reader is, as JSON pointer segments (already escaped).
    path: Vec<String>,
    duplicates: Vec<String>,
}

impl Reader<'_> {
    fn error(&self, reason: &str) -> EpcisError {
        let (line, column) = position(self.bytes, self.at);
        EpcisError::Json {
            line,
            column,
            reason: reason.to_owned(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn expect_literal(&mut self, literal: &[u8], node: Node) -> Result<Node, EpcisError> {
        if self.bytes[self.at..].starts_with(literal) {
            self.at += literal.len();
            Ok(node)
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    /// Reads a value at nesting `depth` (1 for the top level).
    fn value(&mut self, depth: usize) -> Result<Node, EpcisError> {
        match self.peek() {
            None => Err(self.error("unexpected end of input")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Node::String(self.string()?)),
            Some(b't') => self.expect_literal(b"true", Node::Bool(true)),
            Some(b'f') => self.expect_literal(b"false", Node::Bool(false)),
            Some(b'n') => self.expect_literal(b"null", Node::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a JSON value")),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), EpcisError> {
        if depth > DEPTH_MAX {
            let (line, column) = position(self.bytes, self.at);
            return Err(EpcisError::TooDeep {
                line,
                column,
                max: DEPTH_MAX,
            });
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<Node, EpcisError> {
        self.check_depth(depth)?;
        self.at += 1;
        let mut members: Vec<(String, Node)> = Vec::new();
        // Keys seen so far and where their member is. A repeated key is reported, and its last
        // value kept: GS1's own examples repeat a key (AssociationEvent-h, `eventID`), and the
        // value kept is the one `serde_json::Value` and the event hash both see.
        let mut seen = std::collections::BTreeMap::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Node::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':' after an object key"));
            }
            self.at += 1;
            self.skip_whitespace();
            self.path.push(key.replace('~', "~0").replace('/', "~1"));
            let value = self.value(depth + 1)?;
            match seen.get(&key) {
                Some(&index) => {
                    if self.duplicates.len() < DUPLICATES_MAX {
                        self.duplicates.push(format!("/{}", self.path.join("/")));
                    }
                    members[index] = (key, value);
                }
                None => {
                    seen.insert(key.clone(), members.len());
                    members.push((key, value));
                }
            }
            self.path.pop();
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Node::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node, EpcisError> {
        self.check_depth(depth)?;
        self.at += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Node::Array(items));
        }
        loop {
            self.skip_whitespace();
            self.path.push(items.len().to_string());
            items.push(self.value(depth + 1)?);
            self.path.pop();
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Node::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']' in an array")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, EpcisError> {
        let mut code = 0u32;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|byte| char::from(byte).to_digit(16))
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            code = code * 16 + digit;
            self.at += 1;
        }
        Ok(code)
    }

    fn string(&mut self) -> Result<String, EpcisError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            // Copy the run of plain characters in one go.
            let start = self.at;
            while let Some(byte) = self.peek() {
                if byte == b'"' || byte == b'\\' || byte < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // The run ends at an ASCII byte or the end, so it is whole UTF-8 characters.
            out.push_str(
                std::str::from_utf8(&self.bytes[start..self.at])
                    .map_err(|_| self.error("invalid UTF-8"))?,
            );
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let high = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&high) {
                                if !self.bytes[self.at..].starts_with(b"\\u") {
                                    return Err(self.error("unpaired surrogate in \\u escape"));
                                }
                                self.at += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(self.error("unpaired surrogate in \\u escape"));
                                }
                                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                high
                            };
                            out.push(
                                char::from_u32(code).ok_or_else(|| {
                                    self.error("unpaired surrogate in \\u escape")
                                })?,
                            );
                        }
                        _ => {
                            self.at -= 1;
                            return Err(self.error("invalid escape in a string"));
                        }
                    }
                }
                Some(_) => return Err(self.error("control character in a string")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Node, EpcisError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number: no digit after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number: no digit in the exponent"));
            }
        }
        // The number grammar is ASCII only.
        let text = String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned();
        // Refused here, where the position is known, rather than when the value is built.
        if text.parse::<Number>().is_err() {
            self.at = start;
            return Err(self.error("number out of range"));
        }
        Ok(Node::Number(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_number_text() {
        let node = parse(br#" {"b": 12.10, "a": [1e2, -0, "x\u00e9\ud83d\ude00"]} "#);
        let Ok((Node::Object(members), _)) = node else {
            panic!("not an object: {node:?}")
        };
        assert_eq!(
            members[0],
            ("b".to_owned(), Node::Number("12.10".to_owned()))
        );
        assert_eq!(
            members[1].1,
            Node::Array(vec![
                Node::Number("1e2".to_owned()),
                Node::Number("-0".to_owned()),
                Node::String("x\u{e9}\u{1F600}".to_owned()),
            ])
        );
    }

    #[test]
    fn refuses_bad_json() {
        for bad in [
            &b"{"[..],
            b"{\"a\":1,}",
            b"[1,]",
            b"01",
            b"1.",
            b"-",
            b"\"\\x\"",
            b"\"\\ud800\"",
            b"\"a\nb\"",
            b"tru",
            b"{} {}",
            b"NaN",
            b"\xff",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let Ok((node, duplicates)) = parse(br#"{"a":[{"b/c":1,"b/c":2}],"d":0}"#) else {
            panic!("repeated keys are read");
        };
        assert_eq!(duplicates, vec!["/a/0/b~1c".to_owned()]);
        assert_eq!(
            node.get("a").map(|a| a.items()[0].get("b/c")),
            Some(Some(&Node::Number("2".to_owned())))
        );
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(EpcisError::TooDeep { .. })
        ));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse(ok.as_bytes()).is_ok());
    }
}
