//! `$(VAR)` expansion of command, args, env values and `subPathExpr`, as upstream
//! `third_party/forked/golang/expansion`.

use std::borrow::Cow;

/// Replaces `$(NAME)` references in `input` with `lookup(NAME)`, exactly as Kubernetes
/// expands command, args and env values: `$$` is an escaped `$`, a reference whose name
/// `lookup` does not know stays as written, and anything else (`$NAME`, `${NAME}`, an
/// unterminated `$(`) is left alone.
///
/// ```
/// use kubelet_core::expand;
///
/// let lookup = |name: &str| (name == "A").then(|| "x".to_owned());
/// assert_eq!(expand("$(A)-$$(A)-$(B)-$A", lookup), "x-$(A)-$(B)-$A");
/// ```
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let (read, advance) = read_reference(rest);
            match read {
                Reference::Variable(name) => match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push_str("$(");
                        out.push_str(name);
                        out.push(')');
                    }
                },
                Reference::Literal(text) => out.push_str(&text),
            }
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint..]);
    out
}

enum Reference<'a> {
    /// `(NAME)`: a reference to look up.
    Variable(&'a str),
    /// Text to copy as it is.
    Literal(Cow<'a, str>),
}

/// Reads what follows a `$`; returns it and how many bytes of `rest` it consumed.
fn read_reference(rest: &str) -> (Reference<'_>, usize) {
    let Some(first) = rest.chars().next() else {
        return (Reference::Literal(Cow::Borrowed("$")), 0);
    };
    match first {
        // `$$` is an escaped operator.
        '$' => (Reference::Literal(Cow::Borrowed("$")), 1),
        '(' => match rest.bytes().skip(1).position(|b| b == b')') {
            Some(i) => (Reference::Variable(&rest[1..=i]), i + 2),
            // Unterminated: keep "$(" and rescan from after the parenthesis.
            None => (Reference::Literal(Cow::Borrowed("$(")), 1),
        },
        other => {
            let mut text = String::from("$");
            text.push(other);
            (Reference::Literal(Cow::Owned(text)), other.len_utf8())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_escapes_and_keeps_unknown_references() {
        let lookup = |name: &str| match name {
            "A" => Some("x".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let cases = [
            ("$(A)", "x"),
            ("$(A)-$(A)", "x-x"),
            ("$$(A)", "$(A)"),
            ("$(B)", "$(B)"),
            ("$A", "$A"),
            ("${A}", "${A}"),
            ("a$(EMPTY)b", "ab"),
            ("$(A", "$(A"),
            ("$$$(A)", "$x"),
            ("end$", "end$"),
            ("$中文", "$中文"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, lookup), expected, "{input:?}");
        }
    }
}
