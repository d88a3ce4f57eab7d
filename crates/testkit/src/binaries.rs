use std::path::{Path, PathBuf};

/// A server binary the tests need is not installed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name} not found (looked at ${env_var}, {looked_in}, and $PATH); install it with:\n    {install}\nor point ${env_var} at the binary"
)]
pub struct BinaryNotFound {
    pub name: &'static str,
    pub env_var: &'static str,
    pub looked_in: String,
    pub install: &'static str,
}

/// The repository root, where `.ci/run` makes the Python venv (`.venv`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds a server binary: `$env_var` first, then the repository's `.venv/bin`, then `$PATH`.
pub fn find_binary(
    name: &'static str,
    env_var: &'static str,
    install: &'static str,
) -> Result<PathBuf, BinaryNotFound> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
    }
    let venv = repo_root().join(".venv/bin");
    let in_venv = venv.join(name);
    if in_venv.is_file() {
        return Ok(in_venv);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(BinaryNotFound {
        name,
        env_var,
        looked_in: venv.display().to_string(),
        install,
    })
}
