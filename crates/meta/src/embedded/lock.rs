//! The directory lock that makes the embedded store one process's alone.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::MetaError;

const LOCK_FILE: &str = "LOCK";

/// Takes the directory's lock file (an OS lock, released when the process dies) and records
/// our pid in it for the error message of the next opener.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, MetaError> {
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| MetaError::Internal(format!("cannot open {}: {error}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(MetaError::InUse {
                path: dir.display().to_string(),
                detail: if holder.is_empty() {
                    "its lock file is held".to_owned()
                } else {
                    format!("held by process {holder}")
                },
            });
        }
        Err(fs::TryLockError::Error(error)) => {
            return Err(MetaError::Internal(format!(
                "cannot lock {}: {error}",
                path.display()
            )));
        }
    }
    let record = (|| {
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()
    })();
    if let Err(error) = record {
        tracing::warn!(%error, path = %path.display(), "could not record our pid in the lock file");
    }
    Ok(file)
}
