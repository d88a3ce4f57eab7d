//! `shale dev`: one process with the embedded metadata store, a `file://` object store and
//! the cache under one data directory. Nothing else to install.

use std::path::{Path, PathBuf};

use crate::{AgentConfig, AgentError, AgentFlags};

/// Flags of `shale dev`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DevArgs {
    /// Where data, metadata and cache live (created if missing).
    #[arg(long, default_value = "shale-data", env = "SHALE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Listen addresses and tunables, as for `shale agent`.
    #[command(flatten)]
    pub flags: AgentFlags,
}

/// The configuration `shale dev` runs with: everything under `data_dir`, one agent.
pub fn dev_config(args: &DevArgs) -> Result<AgentConfig, AgentError> {
    std::fs::create_dir_all(&args.data_dir).map_err(|error| {
        AgentError::Startup(format!(
            "cannot create data directory {}: {error}",
            args.data_dir.display()
        ))
    })?;
    let data_dir = args.data_dir.canonicalize().map_err(|error| {
        AgentError::Startup(format!(
            "cannot resolve {}: {error}",
            args.data_dir.display()
        ))
    })?;
    let objects = data_dir.join("objects");
    std::fs::create_dir_all(&objects)?;
    let mut flags = args.flags.clone();
    flags
        .metadata
        .get_or_insert_with(|| file_url(&data_dir.join("metadata")));
    flags.object_store.get_or_insert_with(|| file_url(&objects));
    flags
        .cache_dir
        .get_or_insert_with(|| data_dir.join("cache"));
    flags.agent_id.get_or_insert_with(|| "dev".to_owned());
    flags.cache_size.get_or_insert_with(|| "1GiB".to_owned());
    AgentConfig::load(None, &flags)
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}
