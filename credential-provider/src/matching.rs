//! Image and registry matching as upstream's docker keyring (`pkg/credentialprovider/
//! keyring.go`): `matchImages` globs, the registry keys of a plugin's answer, and the
//! image name a plugin is asked about.

/// A URL without a scheme as Go's `url.Parse("https://" + s)` reads it: the host
/// (without user info), the port and the unescaped path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemelessUrl {
    /// `url.Host`: the host and port as written.
    host: String,
    /// `url.Path`, unescaped.
    path: String,
}

/// Upstream's `ParseSchemelessURL`; the error is Go's, e.g.
/// `parse "https://%invalid%": invalid URL escape "%in"`.
pub(crate) fn parse_schemeless_url(text: &str) -> Result<SchemelessUrl, String> {
    let fail = |why: String| Err(format!("parse \"https://{text}\": {why}"));
    if text.chars().any(|c| c.is_ascii_control()) {
        return fail("net/url: invalid control character in URL".to_owned());
    }
    let without_fragment = text.split_once('#').map_or(text, |(before, _)| before);
    let without_query = without_fragment
        .split_once('?')
        .map_or(without_fragment, |(before, _)| before);
    let (authority, raw_path) = match without_query.find('/') {
        Some(i) => without_query.split_at(i),
        None => (without_query, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if let Err(why) = check_host(host) {
        return fail(why);
    }
    let path = match unescape(raw_path) {
        Ok(path) => path,
        Err(why) => return fail(why),
    };
    Ok(SchemelessUrl {
        host: host.to_owned(),
        path,
    })
}

/// Go's `parseHost`: a numeric port after the last colon, `%` escapes well formed, and
/// only the characters a host may hold.
fn check_host(host: &str) -> Result<(), String> {
    let port_part = if let Some(rest) = host.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err("missing ']' in host".to_owned());
        };
        &rest[end + 1..]
    } else {
        host.rfind(':').map_or("", |i| &host[i..])
    };
    let valid_port = port_part
        .strip_prefix(':')
        .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if !port_part.is_empty() && !valid_port {
        return Err(format!("invalid port {port_part:?} after host"));
    }
    unescape(host)?;
    if let Some(bad) = host.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:[]<>\"%".contains(*c) || !c.is_ascii())
    }) {
        return Err(format!(
            "invalid character {:?} in host name",
            bad.to_string()
        ));
    }
    Ok(())
}

/// Percent-decoding with Go's error for a malformed escape.
fn unescape(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                std::str::from_utf8(h)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            });
            match hex {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                }
                None => {
                    let end = (i + 3).min(text.len());
                    let escape = text.get(i..end).unwrap_or(&text[i..]);
                    return Err(format!("invalid URL escape {escape:?}"));
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Upstream's `SplitURL`: the host's dot-separated labels and the port.
fn split_url(url: &SchemelessUrl) -> (Vec<&str>, &str) {
    let host = url.host.as_str();
    let (host, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once("]:") {
            Some((h, p)) => (h, p),
            None => (host, ""),
        }
    } else {
        match host.split_once(':') {
            // net.SplitHostPort refuses a second colon outside brackets.
            Some((h, p)) if !p.contains(':') => (h, p),
            _ => (host, ""),
        }
    };
    (host.split('.').collect(), port)
}

/// Upstream's `URLsMatchStr`: `target` matches `glob` when both parse, the ports are
/// equal, the hosts have as many labels and each label matches its glob (`*`, `?`,
/// `[...]` as Go's `filepath.Match`), and the glob's path is a prefix of the target's.
/// The scheme is not part of either.
pub fn urls_match(glob: &str, target: &str) -> bool {
    let (Ok(glob), Ok(target)) = (parse_schemeless_url(glob), parse_schemeless_url(target)) else {
        return false;
    };
    let (glob_parts, glob_port) = split_url(&glob);
    let (target_parts, target_port) = split_url(&target);
    glob_port == target_port
        && glob_parts.len() == target_parts.len()
        && target.path.starts_with(&glob.path)
        && glob_parts
            .iter()
            .zip(&target_parts)
            .all(|(g, t)| glob_match(g, t) == Some(true))
}

/// Go's `filepath.Match` on one host label (no separators there): `None` for a
/// malformed pattern.
fn glob_match(pattern: &str, name: &str) -> Option<bool> {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    match_from(&pattern, &name)
}

fn match_from(pattern: &[char], name: &[char]) -> Option<bool> {
    let Some((&first, rest)) = pattern.split_first() else {
        return Some(name.is_empty());
    };
    match first {
        '*' => {
            // Check the rest of the pattern is well formed even when nothing is left.
            let mut matched = false;
            for skip in 0..=name.len() {
                if match_from(rest, &name[skip..])? {
                    matched = true;
                    break;
                }
            }
            Some(matched)
        }
        '?' => match name.split_first() {
            Some((_, tail)) => match_from(rest, tail),
            None => validate(rest).map(|()| false),
        },
        '[' => {
            let (class_len, matches) = match_class(rest, name.first().copied())?;
            if !matches {
                return validate(&rest[class_len..]).map(|()| false);
            }
            match_from(&rest[class_len..], &name[1..])
        }
        '\\' => {
            let (&escaped, rest) = rest.split_first()?;
            match name.split_first() {
                Some((&c, tail)) if c == escaped => match_from(rest, tail),
                _ => validate(rest).map(|()| false),
            }
        }
        c => match name.split_first() {
            Some((&n, tail)) if n == c => match_from(rest, tail),
            _ => validate(rest).map(|()| false),
        },
    }
}

/// `Some(())` when the pattern is well formed (Go reports a bad pattern even after a
/// mismatch).
fn validate(pattern: &[char]) -> Option<()> {
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            '[' => i += 1 + match_class(&pattern[i + 1..], None)?.0,
            '\\' => {
                pattern.get(i + 1)?;
                i += 2;
            }
            _ => i += 1,
        }
    }
    Some(())
}

/// A character class after its `[`: its length including the `]`, and whether `c` is
/// in it (false without a character).
fn match_class(class: &[char], c: Option<char>) -> Option<(usize, bool)> {
    let mut i = 0;
    let negated = class.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &lo = class.get(i)?;
        if lo == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if lo == '\\' {
            i += 1;
            *class.get(i)?
        } else if lo == '-' || lo == ']' {
            return None;
        } else {
            lo
        };
        i += 1;
        let mut hi = lo;
        if class.get(i) == Some(&'-') {
            i += 1;
            let &h = class.get(i)?;
            hi = if h == '\\' {
                i += 1;
                *class.get(i)?
            } else if h == '-' || h == ']' {
                return None;
            } else {
                h
            };
            i += 1;
        }
        if let Some(c) = c
            && lo <= c
            && c <= hi
        {
            matched = true;
        }
    }
    Some((i, c.is_some() && matched != negated))
}

/// The registry key upstream's `BasicDockerKeyring.Add` files credentials under: the
/// host and the path (a `/v1/` or `/v2/` prefix dropped), no scheme; `None` when it
/// does not parse.
pub(crate) fn registry_key(registry: &str) -> Option<String> {
    let schemeless = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let url = parse_schemeless_url(schemeless).ok()?;
    let path = if url.path.starts_with("/v2/") || url.path.starts_with("/v1/") {
        &url.path[3..]
    } else {
        url.path.as_str()
    };
    Some(if path.is_empty() || path == "/" {
        url.host
    } else {
        format!("{}{path}", url.host)
    })
}

/// Upstream's `defaultRegistryHost`, whose credentials apply to Docker Hub images.
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// Upstream's `isDefaultRegistryMatch`: the image is on Docker Hub.
fn is_default_registry_match(image: &str) -> bool {
    let (first, rest) = match image.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (image, None),
    };
    if first.is_empty() {
        return false;
    }
    rest.is_none()
        || first == "docker.io"
        || first == DEFAULT_REGISTRY_HOST
        || !first.contains(['.', ':'])
}

/// Upstream's `BasicDockerKeyring.Lookup` over `(registry key, value)` pairs: the values
/// whose key matches `image`, keys in reverse lexical order (longer, more specific
/// first); failing that, the `index.docker.io` ones for a Docker Hub image.
pub(crate) fn lookup<'a, T>(entries: &'a [(String, T)], image: &str) -> Vec<&'a T> {
    let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.reverse();
    let of = |key: &str| -> Vec<&'a T> {
        entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect()
    };
    let found: Vec<&T> = keys
        .iter()
        .filter(|k| urls_match(k, image))
        .flat_map(|k| of(k))
        .collect();
    if !found.is_empty() {
        return found;
    }
    if is_default_registry_match(image) {
        return of(DEFAULT_REGISTRY_HOST);
    }
    Vec::new()
}

/// The name upstream's image manager asks the keyring about (`parsers.ParseImageName`):
/// the repository with its registry made explicit (`docker.io`, `library/` for official
/// images), without tag or digest. `busybox:1.36` is `docker.io/library/busybox`,
/// `localhost:5001/team/app@sha256:...` is `localhost:5001/team/app`.
pub fn repo_to_pull(image: &str) -> String {
    let name = image.split_once('@').map_or(image, |(name, _)| name);
    let name = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    let (domain, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first != first.to_lowercase() =>
        {
            (first, rest)
        }
        _ => ("docker.io", name),
    };
    let domain = if domain == DEFAULT_REGISTRY_HOST {
        "docker.io"
    } else {
        domain
    };
    if domain == "docker.io" && !remainder.contains('/') {
        format!("docker.io/library/{remainder}")
    } else {
        format!("{domain}/{remainder}")
    }
}

/// The registry of an image as upstream's `parseRegistry`: all before the first `/`.
pub(crate) fn registry_of(image: &str) -> &str {
    image.split('/').next().unwrap_or(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's `TestURLsMatch` (keyring_test.go).
    #[test]
    fn urls_match_as_upstream() {
        let cases = [
            ("*.kubernetes.io", "prefix.kubernetes.io", true),
            ("prefix.*.io", "prefix.kubernetes.io", true),
            ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
            ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
            ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true),
            ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true),
            (
                "*.kubernetes.io:1111/blah",
                "prefix.kubernetes.io:1111/blah",
                true,
            ),
            (
                "prefix.*.io:1111/foo",
                "prefix.kubernetes.io:1111/foo/bar",
                true,
            ),
            ("*.kubernetes.io", "kubernetes.io", false),
            ("*.*.kubernetes.io", "prefix.kubernetes.io", false),
            ("*.*.kubernetes.io", "kubernetes.io", false),
            ("*kubernetes.io", "a.kubernetes.io", false),
            ("*kubernetes.io", "kubernetes.io", true),
            ("*.*.*.kubernetes.io", "a.b.c.kubernetes.io", true),
            ("kubernetes.io", "kubernetes.com", false),
            ("k*.io", "quay.io", false),
            (
                "*.kubernetes.io:1234/blah",
                "prefix.kubernetes.io:1111/blah",
                false,
            ),
            (
                "prefix.*.io/foo",
                "prefix.kubernetes.io:1111/foo/bar",
                false,
            ),
            // Beyond upstream's table: ports, paths, classes, bad patterns.
            ("localhost:5001", "localhost:5001/busybox", true),
            ("localhost", "localhost:5001/busybox", false),
            ("localhost:5001", "localhost:5000/busybox", false),
            ("registry.io/team", "registry.io/other/app", false),
            ("registry.io/team", "registry.io/team/app", true),
            ("reg?stry.io", "registry.io/app", false),
            ("w[a-c]s.io", "wbs.io/app", true),
            ("w[^a-c]s.io", "wbs.io/app", false),
            // Go reads a leading `[` as an IPv6 literal: not a valid host here.
            ("[a-c]ws.io", "bws.io/app", false),
            ("[a-.io", "a.io", false),
            ("%invalid%", "%invalid%", false),
        ];
        for (glob, target, expected) in cases {
            assert_eq!(urls_match(glob, target), expected, "{glob} vs {target}");
        }
    }

    #[test]
    fn schemeless_urls_fail_as_go_does() {
        assert_eq!(
            parse_schemeless_url("%invalid%").expect_err("fails"),
            r#"parse "https://%invalid%": invalid URL escape "%in""#
        );
        assert!(parse_schemeless_url("host:port/x").is_err());
        assert!(parse_schemeless_url("has space.io").is_err());
        assert!(parse_schemeless_url("ok.io:5000/path/x").is_ok());
        assert!(parse_schemeless_url("*.ok.io").is_ok());
    }

    /// Upstream's keyring key normalisation (`TestDockerKeyringFromGoogleDockerConfig*`).
    #[test]
    fn registry_keys_drop_scheme_and_version_paths() {
        assert_eq!(
            registry_key("https://index.docker.io/v1/").as_deref(),
            Some("index.docker.io")
        );
        assert_eq!(
            registry_key("http://localhost:5001").as_deref(),
            Some("localhost:5001")
        );
        assert_eq!(
            registry_key("quay.io/v2/team").as_deref(),
            Some("quay.io/team")
        );
        assert_eq!(
            registry_key("*.registry.io").as_deref(),
            Some("*.registry.io")
        );
    }

    #[test]
    fn lookup_most_specific_first_and_docker_hub_default() {
        let entries = vec![
            ("localhost:5001".to_owned(), 1),
            ("localhost:5001/team".to_owned(), 2),
            ("*.example.com".to_owned(), 3),
            ("index.docker.io".to_owned(), 4),
        ];
        assert_eq!(lookup(&entries, "localhost:5001/team/app"), [&2, &1]);
        assert_eq!(lookup(&entries, "localhost:5001/busybox"), [&1]);
        assert_eq!(lookup(&entries, "r.example.com/x"), [&3]);
        assert_eq!(lookup(&entries, "docker.io/library/busybox"), [&4]);
        assert!(lookup(&entries, "quay.io/x").is_empty());
    }

    #[test]
    fn repo_to_pull_normalises_as_the_image_manager() {
        assert_eq!(repo_to_pull("busybox"), "docker.io/library/busybox");
        assert_eq!(repo_to_pull("busybox:1.36"), "docker.io/library/busybox");
        assert_eq!(repo_to_pull("team/app:1"), "docker.io/team/app");
        assert_eq!(
            repo_to_pull("index.docker.io/team/app"),
            "docker.io/team/app"
        );
        assert_eq!(
            repo_to_pull("localhost:5001/busybox:latest"),
            "localhost:5001/busybox"
        );
        assert_eq!(
            repo_to_pull("localhost:5001/team/app@sha256:abcd"),
            "localhost:5001/team/app"
        );
        assert_eq!(repo_to_pull("localhost/app"), "localhost/app");
        assert_eq!(registry_of("localhost:5001/busybox"), "localhost:5001");
    }
}
