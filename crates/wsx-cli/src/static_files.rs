//! `wsx serve --static DIR`: plain HTTP GET/HEAD for the files in a directory, on the
//! WebSocket port (answered from [`wsx::Hook::on_http`]).
//!
//! Safety rules: the path is percent-decoded once, then split on `/`; a `..` segment, a
//! backslash or a NUL is refused (403 / 400); the file found is canonicalized (symlinks
//! resolved) and must still lie inside the canonical root (else 403); only regular files
//! are served (a FIFO or device would block or never end).
//!
//! The answer names the file ([`HttpResponse::file`]); the server streams it, reading
//! through tokio's blocking pool, so files of any size are served without being held in
//! memory or read on the connection's thread. Finding the file (a few `stat`s and a
//! `realpath`) runs on the connection's thread: the hook is synchronous.

use percent_encoding::percent_decode_str;
use std::path::{Path, PathBuf};
use wsx::{HttpRequest, HttpResponse};

/// A directory served over plain HTTP.
#[derive(Debug)]
pub struct StaticFiles {
    /// The canonical root directory.
    root: PathBuf,
}

/// Why a request path cannot name a file under the root.
#[derive(Debug, PartialEq, Eq)]
enum BadPath {
    /// Not valid percent-encoded UTF-8, or holds a NUL (400).
    Malformed,
    /// `..` or a backslash: an attempt to leave the root (403).
    Traversal,
}

impl StaticFiles {
    /// Serves `dir`, which must be an existing directory.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let root = dir
            .canonicalize()
            .map_err(|e| anyhow::anyhow!("--static {}: {e}", dir.display()))?;
        if !root.is_dir() {
            anyhow::bail!("--static {}: not a directory", dir.display());
        }
        Ok(StaticFiles { root })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answers a GET or HEAD request; other methods get 405.
    pub fn respond(&self, req: &HttpRequest) -> HttpResponse {
        let response = if req.method == "GET" || req.is_head() {
            self.lookup(req)
        } else {
            text(405, "files are read with GET or HEAD\n").with_header("Allow", "GET, HEAD")
        };
        tracing::info!(
            method = %req.method,
            path = %req.path(),
            status = response.status,
            "http"
        );
        response
    }

    fn lookup(&self, req: &HttpRequest) -> HttpResponse {
        let raw_path = req.path();
        let segments = match split_path(raw_path) {
            Ok(s) => s,
            Err(BadPath::Malformed) => return text(400, "malformed path\n"),
            Err(BadPath::Traversal) => return text(403, "path not allowed\n"),
        };
        let mut path = self.root.clone();
        path.extend(&segments);
        let mut file = match self.inside_root(&path) {
            Ok(p) => p,
            Err(r) => return r,
        };
        if file.is_dir() {
            if !raw_path.ends_with('/') {
                // So that relative links in the index resolve inside the directory.
                let location = match req.query() {
                    Some(q) => format!("{raw_path}/?{q}"),
                    None => format!("{raw_path}/"),
                };
                return text(301, "moved\n").with_header("Location", location);
            }
            file = match self.inside_root(&file.join("index.html")) {
                Ok(p) => p,
                Err(r) => return r,
            };
        }
        let meta = match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return text(403, "not a regular file\n"),
            Err(_) => return text(404, "not found\n"),
        };
        let content_type = content_type(&file);
        if req.is_head() {
            return HttpResponse::new(200, wsx::Bytes::new())
                .with_header("Content-Type", content_type)
                .with_header("Content-Length", meta.len().to_string())
                .with_header("X-Content-Type-Options", "nosniff");
        }
        HttpResponse::file(200, file, meta.len())
            .with_header("Content-Type", content_type)
            .with_header("X-Content-Type-Options", "nosniff")
    }

    /// Resolves symlinks in `path` and checks that the result is under the root: 404 when
    /// it does not exist, 403 when it escapes.
    fn inside_root(&self, path: &Path) -> Result<PathBuf, HttpResponse> {
        match path.canonicalize() {
            Ok(p) if p.starts_with(&self.root) => Ok(p),
            Ok(_) => Err(text(403, "path not allowed\n")),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(text(403, "permission denied\n"))
            }
            Err(_) => Err(text(404, "not found\n")),
        }
    }
}

/// Percent-decodes a request path and splits it into plain segments (no `.`, `..`, empty).
fn split_path(raw: &str) -> Result<Vec<String>, BadPath> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| BadPath::Malformed)?;
    if decoded.contains('\0') {
        return Err(BadPath::Malformed);
    }
    let mut out = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(BadPath::Traversal),
            s if s.contains('\\') => return Err(BadPath::Traversal),
            // A Windows drive prefix would make `join` replace the root.
            s if cfg!(windows) && s.contains(':') => return Err(BadPath::Traversal),
            s => out.push(s.to_owned()),
        }
    }
    Ok(out)
}

/// A plain-text response.
fn text(status: u16, body: impl Into<String>) -> HttpResponse {
    HttpResponse::new(status, body.into()).with_header("Content-Type", "text/plain; charset=utf-8")
}

/// Content-Type by file extension (a small built-in table; others are octet-stream).
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" | "log" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsx_proto::handshake::Headers;

    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// base/root/{index.html, a b.txt, app.js, sub/index.html, sub/data.json, empty/}
    /// and base/secret.txt outside the root.
    fn tree(name: &str) -> (TempDir, StaticFiles) {
        let base = std::env::temp_dir().join(format!("wsx-static-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(root.join("a b.txt"), "spaced").unwrap();
        std::fs::write(root.join("app.js"), "console.log(1)").unwrap();
        std::fs::write(root.join("sub/index.html"), "sub").unwrap();
        std::fs::write(root.join("sub/data.json"), "{}").unwrap();
        std::fs::write(base.join("secret.txt"), "secret").unwrap();
        let files = StaticFiles::new(&root).unwrap();
        (TempDir(base), files)
    }

    fn get(files: &StaticFiles, method: &str, target: &str) -> HttpResponse {
        let mut r = files.respond(&HttpRequest {
            method: method.into(),
            target: target.into(),
            headers: Headers::new(),
            body: Default::default(),
        });
        // What the server would send: the named file's first `len` bytes.
        if let Some(f) = &r.file {
            let data = std::fs::read(&f.path).unwrap();
            assert_eq!(data.len() as u64, f.len);
            r.body = data.into();
        }
        r
    }

    #[test]
    fn serves_files_with_type_and_index() {
        let (_t, files) = tree("serve");
        let r = get(&files, "GET", "/");
        assert_eq!((r.status, &r.body[..]), (200, &b"<h1>hi</h1>"[..]));
        assert_eq!(
            r.headers.get("content-type"),
            Some("text/html; charset=utf-8")
        );
        let r = get(&files, "GET", "/app.js?v=2");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers.get("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        let r = get(&files, "GET", "/a%20b.txt");
        assert_eq!((r.status, &r.body[..]), (200, &b"spaced"[..]));
        let r = get(&files, "GET", "/sub/");
        assert_eq!((r.status, &r.body[..]), (200, &b"sub"[..]));
        let r = get(&files, "GET", "/sub/./data.json");
        assert_eq!(r.headers.get("content-type"), Some("application/json"));
        // A directory without the slash is redirected, keeping the query.
        let r = get(&files, "GET", "/sub?x=1");
        assert_eq!(r.status, 301);
        assert_eq!(r.headers.get("location"), Some("/sub/?x=1"));
    }

    #[test]
    fn head_has_length_and_no_body() {
        let (_t, files) = tree("head");
        let r = get(&files, "HEAD", "/index.html");
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert_eq!(r.headers.get("content-length"), Some("11"));
        let head = String::from_utf8(r.head_bytes(true)).unwrap();
        assert!(head.contains("Content-Length: 11\r\n"), "{head}");
    }

    #[test]
    fn missing_and_refused() {
        let (t, files) = tree("refused");
        assert_eq!(get(&files, "GET", "/nope.txt").status, 404);
        assert_eq!(get(&files, "GET", "/empty/").status, 404);
        for target in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/sub/../../secret.txt",
            "/..%5csecret.txt",
        ] {
            let r = get(&files, "GET", target);
            assert_eq!(r.status, 403, "{target}");
            assert!(!r.body.starts_with(b"secret"), "{target}");
        }
        // "//etc/passwd" is relative to the root, not absolute.
        assert_eq!(get(&files, "GET", "//etc/passwd").status, 404);
        assert_eq!(get(&files, "GET", "/%00").status, 400);
        assert_eq!(get(&files, "GET", "/%ff").status, 400);
        #[cfg(unix)]
        {
            let root = t.0.join("root");
            std::os::unix::fs::symlink(t.0.join("secret.txt"), root.join("link.txt")).unwrap();
            std::os::unix::fs::symlink(&t.0, root.join("up")).unwrap();
            std::os::unix::fs::symlink(root.join("app.js"), root.join("inside.js")).unwrap();
            assert_eq!(get(&files, "GET", "/link.txt").status, 403);
            assert_eq!(get(&files, "GET", "/up/secret.txt").status, 403);
            assert_eq!(get(&files, "GET", "/inside.js").status, 200);
        }
        let _ = t;
    }

    #[test]
    fn path_splitting() {
        assert_eq!(split_path("/a/./b//c").unwrap(), ["a", "b", "c"]);
        assert_eq!(split_path("/%61").unwrap(), ["a"]);
        assert_eq!(split_path("/a/..").unwrap_err(), BadPath::Traversal);
        assert_eq!(split_path("/a%2F..%2Fb").unwrap_err(), BadPath::Traversal);
        assert_eq!(split_path("/%zz").unwrap(), ["%zz"]);
        assert!(StaticFiles::new(Path::new("/nonexistent/wsx")).is_err());
    }
}
