//! The resolver against temp directories and `file://` mirrors only: no network, never the real
//! cache; the shared checkout is only read, to check that the lock file pins what it holds.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::*;

const REL: &str = "flux/source.toolkit.fluxcd.io_gitrepositories.yaml";
const COMMIT: &str = "39b711b111fa906c3db0a424e252a5d12e48646d";
const UPSTREAM_PATH: &str = "config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml";
const CONTENT: &str =
    "kind: CustomResourceDefinition\nmetadata: {name: gitrepositories.source.toolkit.fluxcd.io}\n";

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn entry(content: &str) -> Entry {
    Entry {
        path: REL.into(),
        url: format!("{DEFAULT_BASE_URL}/fluxcd/source-controller/{COMMIT}/{UPSTREAM_PATH}"),
        sha256: sha(content.as_bytes()),
    }
}

struct Dirs {
    root: TempDir,
}

impl Dirs {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
        }
    }
    fn shared(&self) -> PathBuf {
        self.root.path().join("shared/upstream")
    }
    fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }
    fn mirror(&self) -> PathBuf {
        self.root.path().join("mirror")
    }
    fn mirror_url(&self) -> String {
        format!("file://{}", self.mirror().display())
    }
    fn resolver(&self, content: &str) -> Resolver {
        Resolver::new(self.shared(), self.cache(), vec![entry(content)])
    }
    /// Lay out the mirror as raw.githubusercontent.com does: owner/repo/commit/path.
    fn put_mirror(&self, content: &str) {
        write(
            &self
                .mirror()
                .join(format!("fluxcd/source-controller/{COMMIT}/{UPSTREAM_PATH}")),
            content,
        );
    }
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Every file under `dir` (relative), sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn shared_checkout_is_used_as_it_is() {
    let dirs = Dirs::new();
    // Not the pinned content: the shared checkout is what CI has and is not second-guessed.
    write(&dirs.shared().join(REL), "shared copy\n");
    let found = dirs.resolver(CONTENT).locate(REL).unwrap();
    assert_eq!(found.origin, Origin::Shared);
    assert_eq!(found.path, dirs.shared().join(REL));
    assert!(files(&dirs.cache()).is_empty(), "nothing cached");
}

#[test]
fn shared_checkout_serves_files_that_are_not_pinned() {
    let dirs = Dirs::new();
    write(&dirs.shared().join("azwi/other.json"), "{}");
    let found = dirs.resolver(CONTENT).locate("azwi/other.json").unwrap();
    assert_eq!(found.origin, Origin::Shared);
}

#[test]
fn cache_hit_is_used_without_a_download() {
    let dirs = Dirs::new();
    write(&dirs.cache().join(REL), CONTENT);
    // The mirror does not exist: a download attempt would fail.
    let found = dirs
        .resolver(CONTENT)
        .with_base_url(dirs.mirror_url())
        .locate(REL)
        .unwrap();
    assert_eq!(found.origin, Origin::Cache);
    assert_eq!(found.path, dirs.cache().join(REL));
}

#[test]
fn mirror_download_is_verified_and_cached() {
    let dirs = Dirs::new();
    dirs.put_mirror(CONTENT);
    let resolver = dirs.resolver(CONTENT).with_base_url(dirs.mirror_url());
    let found = resolver.locate(REL).unwrap();
    assert_eq!(found.origin, Origin::Downloaded);
    assert_eq!(found.path, dirs.cache().join(REL));
    assert_eq!(std::fs::read_to_string(&found.path).unwrap(), CONTENT);
    assert_eq!(files(&dirs.cache()), [REL], "no partial download left");

    // Second time: the cache answers, even with the mirror gone.
    std::fs::remove_dir_all(dirs.mirror()).unwrap();
    assert_eq!(resolver.locate(REL).unwrap().origin, Origin::Cache);
}

#[test]
fn a_corrupt_cached_copy_is_downloaded_again() {
    let dirs = Dirs::new();
    write(&dirs.cache().join(REL), "truncated");
    dirs.put_mirror(CONTENT);
    let found = dirs
        .resolver(CONTENT)
        .with_base_url(dirs.mirror_url())
        .locate(REL)
        .unwrap();
    assert_eq!(found.origin, Origin::Downloaded);
    assert_eq!(std::fs::read_to_string(&found.path).unwrap(), CONTENT);
}

#[test]
fn wrong_hash_is_an_error_and_nothing_is_cached() {
    let dirs = Dirs::new();
    dirs.put_mirror("tampered\n");
    let err = dirs
        .resolver(CONTENT)
        .with_base_url(dirs.mirror_url())
        .locate(REL)
        .unwrap_err();
    let UpstreamError::HashMismatch {
        ref path,
        ref expected,
        ref actual,
        ..
    } = err
    else {
        panic!("expected a hash mismatch, got {err}");
    };
    assert_eq!(path, REL);
    assert_eq!(expected, &sha(CONTENT.as_bytes()));
    assert_eq!(actual, &sha(b"tampered\n"));
    let message = err.to_string();
    assert!(message.contains(REL), "{message}");
    assert!(message.contains(expected.as_str()), "{message}");
    assert!(message.contains(actual.as_str()), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert!(
        files(&dirs.cache()).is_empty(),
        "{:?}",
        files(&dirs.cache())
    );
}

#[test]
fn nothing_found_is_one_line_with_the_curl_command() {
    let dirs = Dirs::new();
    let resolver = dirs.resolver(CONTENT).with_base_url(dirs.mirror_url());
    let err = resolver.locate(REL).unwrap_err();
    assert!(matches!(err, UpstreamError::Missing { .. }), "{err}");
    let message = err.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains(REL), "{message}");
    let command = format!(
        "curl -fsSL --create-dirs -o {} {DEFAULT_BASE_URL}/fluxcd/source-controller/{COMMIT}/{UPSTREAM_PATH}",
        dirs.cache().join(REL).display()
    );
    assert!(
        message.ends_with(&format!("get it with: {command}")),
        "{message}"
    );
    assert!(
        files(&dirs.cache()).is_empty(),
        "{:?}",
        files(&dirs.cache())
    );
}

#[test]
fn the_curl_command_of_the_message_fills_the_cache() {
    let dirs = Dirs::new();
    dirs.put_mirror(CONTENT);
    let resolver = dirs.resolver(CONTENT);
    // As a user would with a mirror: the same command, the mirror's URL.
    let command = resolver
        .fetch_command(&resolver.entries()[0])
        .replace(DEFAULT_BASE_URL, &dirs.mirror_url());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
    assert_eq!(resolver.locate(REL).unwrap().origin, Origin::Cache);
}

#[test]
fn paths_with_spaces_are_quoted_in_the_command() {
    let resolver = Resolver::new("/nowhere", "/tmp/my cache", vec![entry(CONTENT)]);
    let command = resolver.fetch_command(&resolver.entries()[0]);
    assert!(
        command.contains(&format!("-o '/tmp/my cache/{REL}' ")),
        "{command}"
    );
}

#[test]
fn unpinned_files_are_refused_by_name() {
    let dirs = Dirs::new();
    let err = dirs
        .resolver(CONTENT)
        .locate("flux/unknown.yaml")
        .unwrap_err();
    assert!(matches!(err, UpstreamError::NotPinned { .. }), "{err}");
    assert!(err.to_string().contains("flux/unknown.yaml"), "{err}");
}

#[test]
fn the_lock_file_pins_every_file_the_repository_reads() {
    let entries = entries().unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "flux/source.toolkit.fluxcd.io_gitrepositories.yaml",
            "flux/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
            "flux/helm.toolkit.fluxcd.io_helmreleases.yaml",
            "aso/managedidentity.azure.com_federatedidentitycredentials.yaml",
            "aso/managedidentity.azure.com_userassignedidentities.yaml",
            "aso/v1api20230131_federatedidentitycredential.sample.yaml",
            "vcluster/values.schema.json",
        ]
    );
    for e in &entries {
        // raw.githubusercontent.com/<owner>/<repo>/<40-hex commit>/<path>
        let rest = e.url.strip_prefix(&format!("{DEFAULT_BASE_URL}/")).unwrap();
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        assert_eq!(parts.len(), 4, "{}", e.url);
        assert_eq!(parts[2].len(), 40, "pinned to a full commit: {}", e.url);
        assert!(parts[2].chars().all(|c| c.is_ascii_hexdigit()), "{}", e.url);
    }
}

/// Read-only: when the shared checkout is beside the repository (CI), the lock file must pin
/// exactly the bytes it holds, so a clone without it downloads the same files.
#[test]
fn the_lock_file_matches_the_shared_checkout_when_present() {
    let shared = default_shared_dir();
    let mut checked = 0;
    for e in entries().unwrap() {
        let path = shared.join(&e.path);
        if !path.is_file() {
            continue;
        }
        assert_eq!(
            sha256_file(&path).unwrap(),
            e.sha256,
            "{} changed: update {LOCK_FILE}",
            path.display()
        );
        checked += 1;
    }
    if checked == 0 {
        eprintln!("note: no shared checkout at {}", shared.display());
    }
}

#[test]
fn malformed_lock_lines_are_reported_with_their_number() {
    let good = format!("{REL} {} {}", entry(CONTENT).url, entry(CONTENT).sha256);
    for (text, needle) in [
        (format!("# c\n\n{REL} only-two\n"), "line 3"),
        (
            format!("../x {} {}\n", entry(CONTENT).url, "0".repeat(64)),
            "`..`",
        ),
        (
            format!("{REL} http://example.invalid/x {}\n", "0".repeat(64)),
            "does not start",
        ),
        (format!("{REL} {} ABC\n", entry(CONTENT).url), "sha256"),
        (format!("{good}\n{good}\n"), "twice"),
    ] {
        let err = parse_lock(&text).unwrap_err();
        assert!(err.to_string().contains(needle), "{text:?}: {err}");
    }
    assert_eq!(parse_lock(&good).unwrap(), vec![entry(CONTENT)]);
}
