//! The operator policy's allow-list entries: name and path globs, and URL patterns. Pure.
//!
//! A glob is literal text where `*` stands for any run of characters other than `/` and `**` for any run at all
//! (so `registry.example.com/agents/*` names one repository's images, and `/etc/claude-k8s/**` a whole tree).
//! Nothing else is special: `?`, `[` and `{` match themselves. Matching is whole-string and case-sensitive.
//!
//! URLs are not globbed as text (`http://127.0.0.1:*` would then also match `http://127.0.0.1:80@evil.example`):
//! both sides are parsed, and the scheme, host, port and path are compared part by part.

use std::path::{Component, Path, PathBuf};

/// One glob of an allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, text: &str) -> bool {
        glob_match(self.0.as_bytes(), text.as_bytes())
    }
}

/// Whether any glob of `list` matches `text`.
pub fn any_matches(list: &[Glob], text: &str) -> bool {
    list.iter().any(|g| g.matches(text))
}

/// Iterative glob matching with backtracking to the last star (linear in practice, no recursion to blow up).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // (pattern index after the star, text index the star's match ends at, whether the star crosses `/`)
    let mut star: Option<(usize, usize, bool)> = None;
    let (mut p, mut t) = (0, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            let deep = pattern.get(p + 1) == Some(&b'*');
            p += if deep { 2 } else { 1 };
            star = Some((p, t, deep));
            continue;
        }
        if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
            continue;
        }
        // Let the last star eat one more character, if it may.
        match star {
            Some((sp, st, deep)) if deep || text[st] != b'/' => {
                star = Some((sp, st + 1, deep));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// An absolute path in normal form (no `.` or `..` components, no repeated or trailing `/`), or `None` for a
/// relative path or one that climbs with `..`. Lexical: nothing is read from the filesystem.
pub fn normal_path(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A URL pattern: `scheme://host[:port][/path]`, where the port may be `*` (any port). A pattern without a path
/// allows any path; one with a path allows that path and what lies below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    text: String,
    url: Url,
}

impl UrlPattern {
    pub fn parse(text: &str) -> Option<Self> {
        let url = Url::parse(text, true)?;
        Some(Self {
            text: text.to_owned(),
            url,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, candidate: &str) -> bool {
        let Some(c) = Url::parse(candidate, false) else {
            return false;
        };
        let p = &self.url;
        let port_ok = match (&p.port, &c.port) {
            (Port::Any, _) => true,
            (a, b) => a == b,
        };
        let path_ok = p.path.is_empty()
            || c.path == p.path
            || c.path
                .strip_prefix(p.path.as_str())
                .is_some_and(|rest| p.path.ends_with('/') || rest.starts_with('/'));
        p.scheme == c.scheme && p.host == c.host && port_ok && path_ok
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Port {
    /// The scheme's default (none written).
    Default,
    Number(u16),
    /// `*` in a pattern.
    Any,
}

/// Just enough of a URL to compare: lower-case scheme and host, the port, the path without query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    scheme: String,
    host: String,
    port: Port,
    path: String,
}

impl Url {
    fn parse(text: &str, pattern: bool) -> Option<Self> {
        let (scheme, rest) = text.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https") {
            return None;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        // User info is refused outright: it is how a URL that reads like one host names another.
        if authority.is_empty() || authority.contains(['@', '\\', ' ']) {
            return None;
        }
        let (host, port_text) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']')?;
                let port = match after {
                    "" => None,
                    a => Some(a.strip_prefix(':')?),
                };
                (format!("[{h}]"), port)
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            },
        };
        let port = match port_text {
            None | Some("") => Port::Default,
            Some("*") if pattern => Port::Any,
            Some(p) => Port::Number(p.parse().ok()?),
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
        {
            return None;
        }
        let path = tail.split(['?', '#']).next().unwrap_or("");
        let path = if path == "/" { "" } else { path };
        Some(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_stays_within_one_path_segment_and_a_double_star_does_not() {
        let g = Glob::new("local/*");
        assert!(g.matches("local/claude-agent:2.1.328"));
        assert!(g.matches("local/"));
        assert!(!g.matches("local/a/b"));
        assert!(!g.matches("localx/a"));
        assert!(!g.matches("registry.example.com/local/a"));
        let deep = Glob::new("/**/target/testcluster/*.kubeconfig");
        assert!(deep.matches("/work/wt/x/target/testcluster/limited.kubeconfig"));
        assert!(deep.matches("/a/target/testcluster/admin.kubeconfig"));
        assert!(!deep.matches("/a/target/testcluster/sub/admin.kubeconfig"));
        assert!(!deep.matches("/a/target/testcluster/admin.kubeconfig.bak"));
        assert!(Glob::new("cf-forbidden-*").matches("cf-forbidden-1a2b"));
        assert!(!Glob::new("default").matches("default2"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*b*c").matches("aXXbYYc"));
        assert!(!Glob::new("a*b*c").matches("aXXbYY"));
        // Special characters of other glob dialects are literal.
        assert!(Glob::new("x?[y]").matches("x?[y]"));
        assert!(!Glob::new("x?").matches("xy"));
    }

    #[test]
    fn paths_are_absolute_and_never_climb() {
        assert_eq!(
            normal_path("/etc//claude-k8s/./x.kubeconfig"),
            Some(PathBuf::from("/etc/claude-k8s/x.kubeconfig"))
        );
        assert_eq!(normal_path("/a/b/"), Some(PathBuf::from("/a/b")));
        assert_eq!(normal_path("relative/x"), None);
        assert_eq!(normal_path("/etc/claude-k8s/../../paperclip/.env"), None);
        assert_eq!(normal_path(""), None);
    }

    #[test]
    fn urls_compare_by_part_not_by_text() {
        let any_port = UrlPattern::parse("http://127.0.0.1:*").unwrap();
        assert!(any_port.matches("http://127.0.0.1:3100"));
        assert!(any_port.matches("http://127.0.0.1:41234/"));
        assert!(any_port.matches("http://127.0.0.1"));
        assert!(!any_port.matches("http://127.0.0.1:3100@evil.example"));
        assert!(!any_port.matches("http://127.0.0.1.evil.example:3100"));
        assert!(!any_port.matches("https://127.0.0.1:3100"));
        let exact = UrlPattern::parse("http://paperclip.paperclip.svc:3100").unwrap();
        assert!(exact.matches("http://PAPERCLIP.paperclip.svc:3100"));
        assert!(exact.matches("http://paperclip.paperclip.svc:3100/api"));
        assert!(!exact.matches("http://paperclip.paperclip.svc:3101"));
        assert!(!exact.matches("http://paperclip.paperclip.svc"));
        let with_path = UrlPattern::parse("https://pc.example.com/tenant-a").unwrap();
        assert!(with_path.matches("https://pc.example.com/tenant-a"));
        assert!(with_path.matches("https://pc.example.com/tenant-a/api"));
        assert!(!with_path.matches("https://pc.example.com/tenant-ab"));
        assert!(!with_path.matches("https://pc.example.com/"));
        for bad in [
            "127.0.0.1:3100",
            "ftp://x",
            "http://",
            "http://a b",
            "http://u:p@h",
        ] {
            assert!(!any_port.matches(bad), "{bad}");
        }
        assert!(UrlPattern::parse("not a url").is_none());
        let v6 = UrlPattern::parse("http://[::1]:*").unwrap();
        assert!(v6.matches("http://[::1]:3100"));
    }
}
