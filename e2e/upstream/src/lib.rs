//! The upstream contract files the repository reads: Flux's and ASO's CRDs, an ASO sample object
//! and vcluster's `values.schema.json`. They are not part of the repository; each is pinned to
//! one upstream commit and its sha256 in `e2e/upstream/upstream.lock`.
//!
//! [`path`] finds `rel` (a path under `upstream/`, e.g.
//! `flux/source.toolkit.fluxcd.io_gitrepositories.yaml`), in this order:
//! 1. the shared checkout beside the repository, `<repo>/../shared/upstream/<rel>`
//!    (`TI_UPSTREAM_SHARED_DIR` names another directory), used as it is;
//! 2. the cache, `$TI_UPSTREAM_CACHE` or
//!    `${XDG_CACHE_HOME:-$HOME/.cache}/tenant-identity-operator/upstream`, when its copy has the
//!    pinned sha256;
//! 3. a download of the pinned URL with `curl -fsSL` (`TI_UPSTREAM_BASE_URL` replaces the
//!    `https://raw.githubusercontent.com` prefix, e.g. `file:///srv/mirror`), verified against
//!    the pinned sha256 and then stored in the cache. A hash mismatch is an error and nothing is
//!    cached.
//!
//! When none of them has the file, the error is one line naming the file and the `curl` command
//! that puts it into the cache.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
};

use sha2::{Digest, Sha256};

/// Directory used instead of `<repo>/../shared/upstream`.
pub const SHARED_DIR_ENV: &str = "TI_UPSTREAM_SHARED_DIR";
/// Cache directory (default `${XDG_CACHE_HOME:-$HOME/.cache}/tenant-identity-operator/upstream`).
pub const CACHE_ENV: &str = "TI_UPSTREAM_CACHE";
/// Replaces [`DEFAULT_BASE_URL`] in the pinned download URLs (a mirror, `file://` included).
pub const BASE_URL_ENV: &str = "TI_UPSTREAM_BASE_URL";
/// The prefix of every pinned URL in the lock file.
pub const DEFAULT_BASE_URL: &str = "https://raw.githubusercontent.com";
/// Where the lock file is, for messages.
pub const LOCK_FILE: &str = "e2e/upstream/upstream.lock";

const LOCK: &str = include_str!("../upstream.lock");

/// One pinned upstream file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path under `upstream/`, e.g. `aso/managedidentity.azure.com_userassignedidentities.yaml`.
    pub path: String,
    /// Raw download URL at the pinned commit (starts with [`DEFAULT_BASE_URL`]).
    pub url: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
}

/// Where a file was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The shared checkout beside the repository.
    Shared,
    /// The cache, from an earlier download or filled by hand.
    Cache,
    /// Downloaded just now, verified and stored in the cache.
    Downloaded,
}

/// A file found by [`Resolver::locate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub origin: Origin,
}

/// Why an upstream file cannot be had. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Not in the shared checkout, not in the cache, and the download failed.
    #[error("upstream file {path} is missing ({tried}); get it with: {command}")]
    Missing {
        path: String,
        /// What was looked at, and why the download failed.
        tried: String,
        /// The shell command that downloads the file into the cache.
        command: String,
    },
    /// The download does not have the pinned sha256.
    #[error(
        "upstream file {path} from {url} has sha256 {actual}, expected {expected} ({LOCK_FILE}); nothing was cached"
    )]
    HashMismatch {
        path: String,
        url: String,
        expected: String,
        actual: String,
    },
    /// Not in the shared checkout and not pinned in the lock file, so there is nothing to fetch.
    #[error("upstream file {path} is not in {shared} and not pinned in {LOCK_FILE}")]
    NotPinned { path: String, shared: String },
    /// The cache cannot be written.
    #[error(
        "cannot write the upstream cache {}: {source} (set {CACHE_ENV} to a writable directory)",
        path.display()
    )]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A found file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The lock file is malformed.
    #[error("{LOCK_FILE} line {line}: {message}")]
    Lock { line: usize, message: String },
}

/// Finds upstream files; [`Resolver::from_env`] is what [`path`] uses.
#[derive(Clone, Debug)]
pub struct Resolver {
    shared_dir: PathBuf,
    cache_dir: PathBuf,
    base_url: String,
    entries: Vec<Entry>,
}

/// [`Resolver::from_env`]`.locate(rel)`, the path only.
pub fn path(rel: &str) -> Result<PathBuf, UpstreamError> {
    Resolver::from_env()?.locate(rel).map(|l| l.path)
}

/// The text of upstream file `rel` (see [`path`]).
pub fn read_to_string(rel: &str) -> Result<String, UpstreamError> {
    let path = path(rel)?;
    std::fs::read_to_string(&path).map_err(|source| UpstreamError::Read { path, source })
}

/// Every file pinned in the lock file.
pub fn entries() -> Result<Vec<Entry>, UpstreamError> {
    parse_lock(LOCK)
}

/// `<repo>/../shared/upstream`, the shared checkout beside the repository.
pub fn default_shared_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.join("../.."));
    repo.join("..").join("shared").join("upstream")
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/tenant-identity-operator/upstream` (the temp dir when
/// neither variable is set).
pub fn default_cache_dir() -> PathBuf {
    let base = env_path("XDG_CACHE_HOME")
        .or_else(|| env_path("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("tenant-identity-operator").join("upstream")
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Resolver {
    /// Directories and base URL from the environment ([`SHARED_DIR_ENV`], [`CACHE_ENV`],
    /// [`BASE_URL_ENV`]), files from the lock file.
    pub fn from_env() -> Result<Self, UpstreamError> {
        let base_url = std::env::var(BASE_URL_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        Ok(Self {
            shared_dir: env_path(SHARED_DIR_ENV).unwrap_or_else(default_shared_dir),
            cache_dir: env_path(CACHE_ENV).unwrap_or_else(default_cache_dir),
            base_url,
            entries: entries()?,
        })
    }

    /// A resolver with explicit directories, the default base URL and the given pins.
    pub fn new(
        shared_dir: impl Into<PathBuf>,
        cache_dir: impl Into<PathBuf>,
        entries: Vec<Entry>,
    ) -> Self {
        Self {
            shared_dir: shared_dir.into(),
            cache_dir: cache_dir.into(),
            base_url: DEFAULT_BASE_URL.to_string(),
            entries,
        }
    }

    /// Download from `base_url` instead of [`DEFAULT_BASE_URL`].
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    pub fn shared_dir(&self) -> &Path {
        &self.shared_dir
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The URL a pinned file is downloaded from (the base URL applied).
    pub fn download_url(&self, entry: &Entry) -> String {
        match entry.url.strip_prefix(DEFAULT_BASE_URL) {
            Some(rest) => format!("{}{rest}", self.base_url.trim_end_matches('/')),
            None => entry.url.clone(),
        }
    }

    /// The shell command that puts a pinned file into the cache (from its upstream URL).
    pub fn fetch_command(&self, entry: &Entry) -> String {
        format!(
            "curl -fsSL --create-dirs -o {} {}",
            shell_quote(&self.cache_dir.join(&entry.path).display().to_string()),
            shell_quote(&entry.url)
        )
    }

    /// Find `rel`: shared checkout, cache, download (see the crate docs).
    pub fn locate(&self, rel: &str) -> Result<Located, UpstreamError> {
        let shared = self.shared_dir.join(rel);
        if shared.is_file() {
            return Ok(Located {
                path: shared,
                origin: Origin::Shared,
            });
        }
        let Some(entry) = self.entries.iter().find(|e| e.path == rel) else {
            return Err(UpstreamError::NotPinned {
                path: rel.to_string(),
                shared: self.shared_dir.display().to_string(),
            });
        };
        let cached = self.cache_dir.join(&entry.path);
        let mut cache_note = "not in the cache".to_string();
        if cached.is_file() {
            match sha256_file(&cached) {
                Ok(actual) if actual == entry.sha256 => {
                    return Ok(Located {
                        path: cached,
                        origin: Origin::Cache,
                    });
                }
                Ok(actual) => cache_note = format!("the cached copy has sha256 {actual}"),
                Err(e) => cache_note = format!("the cached copy cannot be read: {e}"),
            }
        }
        let url = self.download_url(entry);
        match self.download(entry, &url, &cached)? {
            Ok(()) => Ok(Located {
                path: cached,
                origin: Origin::Downloaded,
            }),
            Err(reason) => Err(UpstreamError::Missing {
                path: rel.to_string(),
                tried: format!(
                    "not in {}, {cache_note} {}, download from {url} failed: {reason}",
                    self.shared_dir.display(),
                    self.cache_dir.display()
                ),
                command: self.fetch_command(entry),
            }),
        }
    }

    /// Download `url` next to `target`, verify it, move it into place. `Ok(Err(reason))`: the
    /// download itself failed (the caller reports the file as missing).
    fn download(
        &self,
        entry: &Entry,
        url: &str,
        target: &Path,
    ) -> Result<Result<(), String>, UpstreamError> {
        let dir = target.parent().unwrap_or(&self.cache_dir);
        std::fs::create_dir_all(dir).map_err(|source| UpstreamError::Cache {
            path: dir.to_path_buf(),
            source,
        })?;
        let part = part_file(target);
        let output = Command::new("curl")
            .arg("-fsSL")
            .arg("-o")
            .arg(&part)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let output = match output {
            Ok(o) => o,
            Err(e) => return Ok(Err(format!("cannot run curl: {e}"))),
        };
        if !output.status.success() {
            let _ = std::fs::remove_file(&part);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let reason = stderr
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("curl {}", output.status));
            return Ok(Err(reason));
        }
        let actual = match sha256_file(&part) {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Ok(Err(format!("cannot read the download: {e}")));
            }
        };
        if actual != entry.sha256 {
            let _ = std::fs::remove_file(&part);
            return Err(UpstreamError::HashMismatch {
                path: entry.path.clone(),
                url: url.to_string(),
                expected: entry.sha256.clone(),
                actual,
            });
        }
        std::fs::rename(&part, target).map_err(|source| {
            let _ = std::fs::remove_file(&part);
            UpstreamError::Cache {
                path: target.to_path_buf(),
                source,
            }
        })?;
        Ok(Ok(()))
    }
}

/// A temp name beside `target`, unique per process and call (parallel test processes download
/// the same file; each renames its own complete copy into place).
fn part_file(target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(
        ".{name}.{}.{}.part",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    Ok(hex::encode(Sha256::digest(std::fs::read(path)?)))
}

/// `s` as one shell word.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | ':' | '=' | '@' | '+')
        });
    if plain {
        s.to_string()
    } else {
        let mut out = String::from("'");
        for c in s.chars() {
            if c == '\'' {
                out.push_str("'\\''");
            } else {
                out.push(c);
            }
        }
        out.push('\'');
        out
    }
}

/// Parse lock-file text: `path url sha256` per line, `#` comments and blank lines ignored.
pub fn parse_lock(text: &str) -> Result<Vec<Entry>, UpstreamError> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let bad = |message: String| UpstreamError::Lock {
            line: line_no,
            message,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [path, url, sha256] = fields[..] else {
            return Err(bad(format!(
                "expected `path url sha256`, got {} field(s)",
                fields.len()
            )));
        };
        let path_ok = !path.starts_with('/')
            && Path::new(path)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !path_ok {
            return Err(bad(format!("{path}: not a relative path without `..`")));
        }
        if !url.starts_with(&format!("{DEFAULT_BASE_URL}/")) {
            return Err(bad(format!(
                "{url}: does not start with {DEFAULT_BASE_URL}/"
            )));
        }
        if sha256.len() != 64 || !sha256.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(bad(format!("{sha256}: not a lowercase hex sha256")));
        }
        if entries.iter().any(|e| e.path == path) {
            return Err(bad(format!("{path} is pinned twice")));
        }
        entries.push(Entry {
            path: path.to_string(),
            url: url.to_string(),
            sha256: sha256.to_string(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
