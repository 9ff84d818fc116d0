//! PostgreSQL's array text form (`{1,2}`, `{"a b",NULL}`, `{{1,2},{3,4}}`,
//! `[0:1]={7,8}`) as a JSON array, the form every SQL engine reading silver
//! understands (`json_get`, `->>`).

use serde_json::Value;

use super::cell::Elem;

/// The JSON text of an array literal; `None` when it is not one.
pub fn to_json(text: &str, elem: Elem) -> Option<String> {
    let mut text = text.trim();
    if text.starts_with('[') {
        // Explicit bounds: `[1:2]={...}`; JSON arrays start at 0 anyway.
        text = text[text.find('=')? + 1..].trim_start();
    }
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
        elem,
    };
    let value = parser.array()?;
    parser.skip_space();
    (parser.at == parser.bytes.len()).then(|| value.to_string())
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    elem: Elem,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn array(&mut self) -> Option<Value> {
        self.skip_space();
        if self.peek()? != b'{' {
            return None;
        }
        self.at += 1;
        let mut items = Vec::new();
        self.skip_space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(Value::Array(items));
        }
        loop {
            self.skip_space();
            items.push(match self.peek()? {
                b'{' => self.array()?,
                b'"' => {
                    let text = self.quoted()?;
                    match self.elem {
                        // json elements are quoted whenever they hold a comma or brace.
                        Elem::Json => serde_json::from_str(&text).unwrap_or(Value::String(text)),
                        _ => Value::String(text),
                    }
                }
                _ => self.unquoted()?,
            });
            self.skip_space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(Value::Array(items));
                }
                _ => return None,
            }
        }
    }

    /// A double-quoted element: always a string, backslash escapes any byte.
    fn quoted(&mut self) -> Option<String> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    out.push(*self.bytes.get(self.at + 1)?);
                    self.at += 2;
                }
                b => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
    }

    /// An unquoted element up to the next delimiter; `NULL` is null.
    fn unquoted(&mut self) -> Option<Value> {
        let start = self.at;
        while !matches!(self.peek()?, b',' | b'}') {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at])
            .ok()?
            .trim();
        if text.eq_ignore_ascii_case("null") {
            return Some(Value::Null);
        }
        Some(match self.elem {
            Elem::Number => match serde_json::from_str::<serde_json::Number>(text) {
                Ok(n) => Value::Number(n),
                // NaN and infinities have no JSON number.
                Err(_) => Value::String(text.to_owned()),
            },
            Elem::Bool => match text {
                "t" | "true" => Value::Bool(true),
                "f" | "false" => Value::Bool(false),
                _ => Value::String(text.to_owned()),
            },
            Elem::Json => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
            }
            Elem::Text => Value::String(text.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_become_json() {
        assert_eq!(to_json("{}", Elem::Text).as_deref(), Some("[]"));
        assert_eq!(
            to_json(r#"{a,"b c","d\"e",NULL}"#, Elem::Text).as_deref(),
            Some(r#"["a","b c","d\"e",null]"#)
        );
        assert_eq!(
            to_json("{{1,2},{3,NaN}}", Elem::Number).as_deref(),
            Some(r#"[[1,2],[3,"NaN"]]"#)
        );
        assert_eq!(
            to_json("{t,f}", Elem::Bool).as_deref(),
            Some("[true,false]")
        );
        assert_eq!(
            to_json("[0:1]={7,8}", Elem::Number).as_deref(),
            Some("[7,8]")
        );
        assert_eq!(to_json("{1,2", Elem::Number), None);
        assert_eq!(to_json("not an array", Elem::Text), None);
    }
}
