//! The tapline.toml files of the Kubernetes manifests (the ConfigMaps the
//! kustomize base and overlays generate) are valid configurations for this
//! build, with the token files the DaemonSet mounts.

use std::path::{Path, PathBuf};

use tapline_config::Config;

fn manifest_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../containers/k8s");
    let mut found = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "tapline.toml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_manifest_config_parses_with_tokens_enabled() {
    let files = manifest_configs();
    // base and inline-tools at least.
    assert!(files.len() >= 2, "found only {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            c.passive().is_some() && c.inline().is_some(),
            "{}",
            path.display()
        );
        assert_eq!(
            c.control.admin_token_file.as_deref(),
            Some(Path::new("/etc/tapline-secrets/admin-token")),
            "{}: the DaemonSet mounts the tokens Secret at /etc/tapline-secrets",
            path.display()
        );
        assert_eq!(
            c.control.observer_token_file.as_deref(),
            Some(Path::new("/etc/tapline-secrets/observer-token")),
            "{}",
            path.display()
        );
        assert_eq!(c.state_dir, Path::new("/run/tapline"), "{}", path.display());
    }
}
