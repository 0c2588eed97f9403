//! Reads and rewrites JSON without building a `serde_json::Value`. The body is checked once as
//! a full parse would check it ([`check`]); after that, objects are read as their fields and
//! arrays as their elements, each a slice of the body's text, by a scanner that only has to
//! find where a value ends (strings and brackets, found with `memchr`). An object is written
//! again with some fields' values replaced while every other byte of its values is copied as
//! it came. The proxy changes a few fields of a client's body this way (`shape.rs` for Qwen,
//! `request.rs` for an alias or the output-token cap).
//!
//! The scanner's input is always JSON that a full parse accepts: a checked client body, or the
//! serialization of a `Value`. On anything else it does not panic, but what it reads is
//! unspecified.
//!
//! Duplicate keys: a full parse keeps the first key's place and the last one's value. A
//! replaced field follows that rule (written at its first place, its other copies dropped);
//! every other field is copied as it is, duplicates included, so that a full parse of the
//! result is the full parse of the body with that change.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Error;

/// One field of an object: its key (a JSON string with its quotes, escapes as sent) and its
/// value (JSON text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Field<'a> {
    pub(super) key: &'a str,
    pub(super) value: &'a str,
}

impl Field<'_> {
    /// Whether the key, unescaped, is `name`.
    pub(super) fn is(&self, name: &str) -> bool {
        is_str(self.key, name)
    }
}

/// Checks that a full parse (`serde_json::from_slice::<Value>`) accepts `body`, and fails
/// with that parse's error where it does not, without building anything. The quick read of a
/// client's body skips what it does not look at: it accepts lone UTF-16 surrogates and invalid
/// UTF-8 in strings, numbers out of `f64`'s range and nesting of 128 levels or more. One
/// difference is kept on purpose: serde_json's private marker key
/// `$serde_json::private::RawValue`, first in an object, makes a full parse read the object
/// as its value's JSON; here it is an ordinary key.
///
/// # Errors
///
/// The full parse's error.
pub(super) fn check(body: &[u8]) -> Result<&str, Error> {
    // Parsing a `str` spares the UTF-8 check of each string; a body that is not UTF-8 is
    // parsed as bytes, for the full parse's error.
    match std::str::from_utf8(body) {
        Ok(text) => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            Checked::deserialize(&mut deserializer)?;
            deserializer.end()?;
            Ok(text)
        }
        Err(not_utf8) => {
            let mut deserializer = serde_json::Deserializer::from_slice(body);
            Checked::deserialize(&mut deserializer)?;
            deserializer.end()?;
            Err(de::Error::custom(not_utf8))
        }
    }
}

/// Any JSON value, read as a full parse reads it (same recursion limit, same string and
/// number checks) and then forgotten.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Self;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(Self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<Self>()?.is_some() {}
        Ok(Self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<Self, Self>()?.is_some() {}
        Ok(Self)
    }
}

/// The fields of `object`, in order (none when it is not an object).
pub(super) fn fields(object: &str) -> Fields<'_> {
    Fields(Members::open(object, b'{'))
}

/// The elements of `array`, in order (none when it is not an array).
pub(super) fn elements(array: &str) -> Elements<'_> {
    Elements(Members::open(array, b'['))
}

/// The elements of `array`, in order, each with the values of its last fields named `names`
/// when it is an object (read on the way, not by a second scan of the element).
pub(super) fn elements_with<'a, 'n, const N: usize>(
    array: &'a str,
    names: [&'n str; N],
) -> ElementsWith<'a, 'n, N> {
    ElementsWith {
        members: Members::open(array, b'['),
        names,
    }
}

/// See [`fields`].
pub(super) struct Fields<'a>(Members<'a>);

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        self.0.advance()?;
        let key = self.0.value()?;
        self.0.eat(b':')?;
        let value = self.0.value()?;
        Some(Field { key, value })
    }
}

/// See [`elements`].
pub(super) struct Elements<'a>(Members<'a>);

impl<'a> Iterator for Elements<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.0.advance()?;
        self.0.value()
    }
}

/// See [`elements_with`].
pub(super) struct ElementsWith<'a, 'n, const N: usize> {
    members: Members<'a>,
    names: [&'n str; N],
}

impl<'a, const N: usize> Iterator for ElementsWith<'a, '_, N> {
    type Item = (&'a str, [Option<&'a str>; N]);

    fn next(&mut self) -> Option<Self::Item> {
        self.members.advance()?;
        let text = self.members.text;
        let start = skip_whitespace(text.as_bytes(), self.members.at);
        let mut found = [None; N];
        if text.as_bytes().get(start) != Some(&b'{') {
            return Some((self.members.value()?, found));
        }
        let mut fields = Fields(Members {
            text,
            at: start + 1,
            first: true,
        });
        for field in fields.by_ref() {
            if let Some(index) = self.names.iter().position(|name| field.is(name)) {
                found[index] = Some(field.value);
            }
        }
        let mut object = fields.0;
        object.eat(b'}')?;
        self.members.at = object.at;
        Some((text.get(start..object.at)?, found))
    }
}

/// The scanner under the iterators: `at` is just past the opening bracket or the last value
/// read. A step that finds what it does not expect ends the scan where it is.
struct Members<'a> {
    text: &'a str,
    at: usize,
    /// Whether the next value is the first (no comma before it).
    first: bool,
}

impl<'a> Members<'a> {
    /// The members of `text`, which opens with `open`.
    fn open(text: &'a str, open: u8) -> Self {
        let mut members = Self {
            text,
            at: 0,
            first: true,
        };
        if members.eat(open).is_none() {
            members.at = text.len();
        }
        members
    }

    /// Steps to the next member, past a comma unless it is the first; `None` at the end.
    fn advance(&mut self) -> Option<()> {
        if std::mem::take(&mut self.first) {
            return Some(());
        }
        self.eat(b',')
    }

    /// The value (or key) that starts here; `None` at a closing bracket.
    fn value(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = skip_whitespace(bytes, self.at);
        let end = value_end(bytes, start)?;
        self.at = end;
        self.text.get(start..end)
    }

    /// Steps over `byte` (a bracket, comma or colon) after any whitespace.
    fn eat(&mut self, byte: u8) -> Option<()> {
        let at = skip_whitespace(self.text.as_bytes(), self.at);
        (self.text.as_bytes().get(at) == Some(&byte)).then(|| self.at = at + 1)
    }
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// Where the value starting at `start` ends (just past it); `None` at a closing bracket or the
/// end of the text.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => Some(string_end(bytes, start)),
        b'{' => Some(container_end(bytes, start, b'{', b'}')),
        b'[' => Some(container_end(bytes, start, b'[', b']')),
        b'}' | b']' | b',' | b':' => None,
        _ => {
            let rest = bytes.get(start..)?;
            let length = rest
                .iter()
                .position(|byte| matches!(byte, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            Some(start + length)
        }
    }
}

/// Just past the string whose opening quote is at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while let Some(found) = bytes.get(at..).and_then(find_quote) {
        let quote = at + found;
        // A quote after an odd number of backslashes is escaped.
        let backslashes = bytes[..quote]
            .iter()
            .rev()
            .take_while(|&&byte| byte == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return quote + 1;
        }
        at = quote + 1;
    }
    bytes.len()
}

/// Where the first `"` is in `text`. Most strings here are short: a plain loop finds their end
/// before `memchr`'s vector search would have been set up.
fn find_quote(text: &[u8]) -> Option<usize> {
    const NEAR: usize = 16;
    let (near, far) = text.split_at(text.len().min(NEAR));
    near.iter()
        .position(|&byte| byte == b'"')
        .or_else(|| memchr::memchr(b'"', far).map(|index| index + NEAR))
}

/// Just past the object or array opened at `start`: only its own kind of bracket counts, and
/// brackets inside strings do not.
fn container_end(bytes: &[u8], start: usize, open: u8, close: u8) -> usize {
    let mut depth = 0_usize;
    let mut at = start;
    while let Some(&byte) = bytes.get(at) {
        if byte == b'"' {
            at = string_end(bytes, at);
            continue;
        }
        at += 1;
        if byte == open {
            depth += 1;
        } else if byte == close {
            depth -= 1;
            if depth == 0 {
                return at;
            }
        }
    }
    bytes.len()
}

/// The value of the last field named `name`, the one a full parse keeps.
pub(super) fn last<'a>(fields: &[Field<'a>], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .rev()
        .find(|field| field.is(name))
        .map(|field| field.value)
}

/// The values of the last fields named `names` in `object`, the ones a full parse keeps.
pub(super) fn find<'a, const N: usize>(object: &'a str, names: [&str; N]) -> [Option<&'a str>; N] {
    let mut found = [None; N];
    for field in fields(object) {
        if let Some(index) = names.iter().position(|name| field.is(name)) {
            found[index] = Some(field.value);
        }
    }
    found
}

/// Writes the object of `fields` to `out`, in their order, with the values of the fields
/// named `names` written by `write_value` (given the index in `names`) instead: at the first
/// field of that name, or after the others when there is none. At most 32 names.
pub(super) fn write_object<'a>(
    out: &mut Vec<u8>,
    fields: impl IntoIterator<Item = Field<'a>>,
    names: &[&str],
    mut write_value: impl FnMut(&mut Vec<u8>, usize),
) {
    debug_assert!(names.len() <= 32, "one bit per name");
    let mut written = 0_u32;
    let mut separator: &[u8] = b"{";
    for field in fields {
        let replaced = names.iter().position(|name| field.is(name));
        if let Some(index) = replaced {
            if written & (1 << index) != 0 {
                continue;
            }
            written |= 1 << index;
        }
        out.extend_from_slice(separator);
        separator = b",";
        out.extend_from_slice(field.key.as_bytes());
        out.push(b':');
        match replaced {
            Some(index) => write_value(out, index),
            None => out.extend_from_slice(field.value.as_bytes()),
        }
    }
    for (index, name) in names.iter().enumerate() {
        if written & (1 << index) == 0 {
            out.extend_from_slice(separator);
            separator = b",";
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            write_value(out, index);
        }
    }
    if separator == b"{" {
        out.push(b'{');
    }
    out.push(b'}');
}

/// Whether `value` is a JSON string that reads `expected`.
pub(super) fn is_str(value: &str, expected: &str) -> bool {
    let Some(contents) = string_contents(value) else {
        return false;
    };
    // Each escape is longer than what it stands for: only a longer string can read the same
    // through escapes.
    match contents.len().cmp(&expected.len()) {
        Ordering::Less => false,
        Ordering::Equal => contents == expected,
        Ordering::Greater => {
            contents.contains('\\')
                && serde_json::from_str::<Cow<'_, str>>(value).is_ok_and(|text| text == expected)
        }
    }
}

/// What is between the quotes of a JSON string, escapes as they are; `None` for any other
/// value.
pub(super) fn string_contents(value: &str) -> Option<&str> {
    value
        .strip_prefix('"')
        .and_then(|text| text.strip_suffix('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn rewritten(text: &str, names: &[&str]) -> String {
        let mut out = Vec::new();
        write_object(&mut out, fields(text), names, |out, index| {
            out.extend_from_slice(format!("\"new {index}\"").as_bytes());
        });
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn check_refuses_what_a_full_parse_refuses_with_its_error() {
        let deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
        let bodies: [&[u8]; 9] = [
            br#"{"a":"\udc00"}"#,
            br#"{"a":["\ud800x"]}"#,
            br#"{"\ud800":1}"#,
            b"{\"a\":\"\xff\"}",
            br#"{"a":1e400}"#,
            br#"{"a":-1e999}"#,
            deep.as_bytes(),
            b"{\"a\":1} x",
            b"{\"a\":\"\x01\"}",
        ];
        for body in bodies {
            let full = serde_json::from_slice::<Value>(body).expect_err("refused");
            let checked = check(body).expect_err("refused");
            assert_eq!(checked.to_string(), full.to_string(), "{body:?}");
        }
        let nested = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let marker = r#"{"a":{"$serde_json::private::RawValue":5}}"#;
        assert!(serde_json::from_str::<Value>(marker).is_err());
        assert_eq!(check(marker.as_bytes()).expect("an ordinary key"), marker);
        for body in [
            nested.as_str(),
            r#"{"a":"\ud83d\ude00 é \" \\ \u0000","b":[1,-2,3.5e10,true,null,{}]}"#,
        ] {
            serde_json::from_str::<Value>(body).expect("a full parse accepts it");
            assert_eq!(check(body.as_bytes()).expect("accepted"), body);
        }
    }

    #[test]
    fn fields_are_read_in_order_with_keys_and_values_as_sent() {
        let text = " { \"b\" : [1, \"]\", {\"]\":\"[\"}] ,\n\"\\u0061\":\"x\\n\\\"}\", \"b\":{\"c\": null}, \"d\":-1.5e3\t} ";
        let read: Vec<(&str, &str)> = fields(text).map(|field| (field.key, field.value)).collect();
        assert_eq!(
            read,
            [
                (r#""b""#, r#"[1, "]", {"]":"["}]"#),
                (r#""\u0061""#, r#""x\n\"}""#),
                (r#""b""#, r#"{"c": null}"#),
                (r#""d""#, "-1.5e3"),
            ]
        );
        let all: Vec<Field<'_>> = fields(text).collect();
        assert!(all[1].is("a"), "an escaped key is unescaped to compare");
        assert_eq!(last(&all, "b"), Some(r#"{"c": null}"#));
        assert_eq!(last(&all, "c"), None);
        assert_eq!(
            find(text, ["b", "a", "c"]),
            [Some(r#"{"c": null}"#), Some(r#""x\n\"}""#), None]
        );
        assert_eq!(fields("{}").count(), 0);
        assert_eq!(fields(" { } ").count(), 0);
        assert_eq!(fields("[1]").count(), 0, "not an object");
    }

    #[test]
    fn elements_are_read_in_order() {
        let text = r#"[1, "a\\", {"b": [2, "]"]}, [ ], null,true,"\""]"#;
        let read: Vec<&str> = elements(text).collect();
        assert_eq!(
            read,
            [
                "1",
                r#""a\\""#,
                r#"{"b": [2, "]"]}"#,
                "[ ]",
                "null",
                "true",
                r#""\"""#
            ]
        );
        assert_eq!(elements("[]").count(), 0);
        assert_eq!(elements("{}").count(), 0, "not an array");
        let deep = format!("[{}{}, 2]", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(elements(&deep).nth(1), Some("2"));
    }

    #[test]
    fn elements_are_read_with_the_named_fields_of_objects() {
        let text = r#"[ {"role":"a","x":{"role":"no"},"role" : "b"} ,7, { }, {"content":[1]}]"#;
        let read: Vec<(&str, [Option<&str>; 2])> =
            elements_with(text, ["role", "content"]).collect();
        assert_eq!(
            read,
            [
                (
                    r#"{"role":"a","x":{"role":"no"},"role" : "b"}"#,
                    [Some(r#""b""#), None]
                ),
                ("7", [None, None]),
                ("{ }", [None, None]),
                (r#"{"content":[1]}"#, [None, Some("[1]")]),
            ]
        );
    }

    #[test]
    fn text_that_is_not_json_is_read_without_a_panic() {
        for text in [
            "[{\"a\":1",
            "[{\"a\":1,",
            "[{\"a\"}]",
            "[{,}]",
            "{,}",
            "[,1]",
            "{:}",
            "{",
            "[",
            "{\"a",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1,",
            "[1,",
            "[\"\\",
            "{\"a\" 1}",
            "[1 2]",
            "{\"é\\",
            "[{]",
            "]",
            "{\"a\":1}}",
            "[\"a\\é\"]",
        ] {
            let _ = fields(text).count();
            let _ = elements(text).count();
            let _ = elements_with(text, ["a"]).count();
        }
    }

    #[test]
    fn a_rewritten_object_keeps_every_other_byte_and_the_first_place_of_a_replaced_field() {
        assert_eq!(
            rewritten(r#"{"a": "\u00e9" ,"b":1,"c":[ 1 ],"b":2,"a":3}"#, &["b"]),
            r#"{"a":"\u00e9","b":"new 0","c":[ 1 ],"a":3}"#
        );
        assert_eq!(
            rewritten(r#"{"a":1}"#, &["z", "a", "y"]),
            r#"{"a":"new 1","z":"new 0","y":"new 2"}"#
        );
        assert_eq!(rewritten("{ }", &[]), "{}");
        assert_eq!(rewritten("{}", &["a"]), r#"{"a":"new 0"}"#);
    }

    #[test]
    fn strings_are_compared_unescaped() {
        assert!(is_str(r#""user""#, "user"));
        assert!(is_str(r#""\u0075ser""#, "user"));
        assert!(!is_str(r#""users""#, "user"));
        assert!(!is_str(r#""us\"er""#, "user"));
        assert!(!is_str("7", "7"));
        assert_eq!(string_contents(r#""a\nb""#), Some(r"a\nb"));
        assert_eq!(string_contents("[]"), None);
    }
}
