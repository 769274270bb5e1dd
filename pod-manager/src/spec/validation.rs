//! The few apimachinery name validations the translation repeats, with upstream's
//! messages (`IsDNS1123Label`, `IsDNS1123Subdomain`, `IsQualifiedName`).

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_KEY_NAME_MAX: usize = 63;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

/// Labels joined by dots.
fn matches_subdomain(value: &str) -> bool {
    value.split('.').all(matches_label)
}

/// Upstream `RegexError`.
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}'")).collect();
    format!(
        "{message} (e.g. {}, regex used for validation is '{format}')",
        examples.join(" or ")
    )
}

/// Upstream `validation.IsDNS1123Label`.
pub(super) fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errors.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !matches_label(value) {
        if matches_subdomain(value) {
            // A valid subdomain of acceptable length: the dots are the problem.
            errors.push("must not contain dots".to_owned());
        } else {
            errors.push(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric \
                 characters or '-', and must start and end with an alphanumeric character",
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errors
}

/// Upstream `validation.IsDNS1123Subdomain`.
pub(super) fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errors.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !matches_subdomain(value) {
        errors.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
             characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errors
}

/// Upstream `IsQualifiedName` (a label key): an optional DNS subdomain prefix and `/`,
/// then a name of at most 63 alphanumerics, `-`, `_` and `.`, alphanumeric at both ends.
pub(super) fn is_label_key(value: &str) -> Vec<String> {
    const NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
                                and must start and end with an alphanumeric character";
    const NAME_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                // The content package's subdomain check counts bytes.
                let mut prefix_errors = is_dns1123_subdomain(prefix);
                for e in &mut prefix_errors {
                    *e = format!("prefix part {}", e.replace(" characters", " bytes"));
                }
                errors.extend(prefix_errors);
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                regex_error(NAME_MESSAGE, LABEL_KEY_FMT, NAME_EXAMPLES)
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > LABEL_KEY_NAME_MAX {
        errors.push(format!(
            "name part must be no more than {LABEL_KEY_NAME_MAX} bytes"
        ));
    }
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    let valid = match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first)
                && alnum(last)
                && bytes
                    .iter()
                    .all(|b| alnum(b) || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    };
    if !valid {
        errors.push(format!(
            "name part {}",
            regex_error(NAME_MESSAGE, LABEL_KEY_FMT, NAME_EXAMPLES)
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(is_dns1123_label("web-0").is_empty());
        assert_eq!(is_dns1123_label("a.b"), ["must not contain dots"]);
        assert_eq!(is_dns1123_label("Web").len(), 1);
        assert!(is_dns1123_label("-a").len() == 1);
        assert!(is_dns1123_label(&"a".repeat(64))[0].contains("no more than 63"));
        assert!(is_dns1123_subdomain("a.b-c.d").is_empty());
        assert!(!is_dns1123_subdomain("a..b").is_empty());
        assert!(!is_dns1123_subdomain("").is_empty());
    }

    #[test]
    fn label_keys() {
        assert!(is_label_key("app").is_empty());
        assert!(is_label_key("example.com/App_1.x").is_empty());
        assert_eq!(is_label_key("/x"), ["prefix part must be non-empty"]);
        assert_eq!(is_label_key("a/b/c").len(), 1);
        assert!(is_label_key("bad key")[0].starts_with("name part must consist of"));
        assert_eq!(
            is_label_key(""),
            [
                "name part must be non-empty".to_owned(),
                format!(
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
                 start and end with an alphanumeric character (e.g. 'MyName' or 'my.name' or \
                 '123-abc', regex used for validation is '{LABEL_KEY_FMT}')"
                )
            ]
        );
    }
}
