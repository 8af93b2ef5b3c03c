//! A few lines of JSON output: enough for flat objects of strings,
//! numbers and nested objects, without a serialisation framework.

use std::fmt::Write;

/// A JSON string literal for `s`, quotes included.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An object built member by member; values are already-encoded JSON.
#[derive(Debug, Default)]
pub struct Object {
    members: Vec<(String, String)>,
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object::default()
    }

    /// Adds a member whose value is encoded JSON (a number, `null`, an
    /// object's [`Object::finish`], ...).
    pub fn raw(&mut self, key: &str, json: impl Into<String>) -> &mut Self {
        self.members.push((key.to_string(), json.into()));
        self
    }

    /// Adds a string member.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.raw(key, string(value))
    }

    /// Adds a string member, or `null`.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// Adds a number member.
    pub fn num(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        self.raw(key, value.to_string())
    }

    /// The encoded object.
    pub fn finish(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&string(k));
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        out
    }
}

/// An array of encoded JSON values.
pub fn array<I: IntoIterator<Item = String>>(items: I) -> String {
    let items: Vec<String> = items.into_iter().collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_nests() {
        assert_eq!(string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
        let mut inner = Object::new();
        inner.num("n", 5).opt_str("none", None);
        let mut o = Object::new();
        o.str("k", "v")
            .raw("inner", inner.finish())
            .raw("list", array(["1".to_string(), string("x")]));
        assert_eq!(
            o.finish(),
            r#"{"k":"v","inner":{"n":5,"none":null},"list":[1,"x"]}"#
        );
    }
}
