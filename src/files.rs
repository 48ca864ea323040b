//! Reading definition files from a local directory tree, as `bosun validate` does on a checkout.
//!
//! Symlinks are reported and never followed, hidden directories (`.git`, `.github`) are passed over, and
//! only `.yaml` and `.yml` files are read.

use std::fs;
use std::path::{Path, PathBuf};

/// A file found under the given paths, with its text or why it could not be read.
#[derive(Debug)]
pub struct Found {
    pub path: PathBuf,
    pub text: Result<String, String>,
}

/// Why a path given on the command line cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{path}: no such file or directory")]
    Missing { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Collects the YAML files under `paths` (files given by name are read whatever their extension), in a
/// stable order. Symlinks found inside directories are returned as unreadable, with the reason.
///
/// # Errors
/// When a path given does not exist or a directory cannot be listed.
pub fn collect(paths: &[PathBuf], max_bytes: usize) -> Result<Vec<Found>, CollectError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = fs::symlink_metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CollectError::Missing { path: path.clone() },
            _ => CollectError::Unreadable {
                path: path.clone(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            walk(path, max_bytes, &mut out)?;
        } else {
            // A path named on the command line is the user's choice: read it, link or not.
            out.push(read(path, max_bytes));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, max_bytes: usize, out: &mut Vec<Found>) -> Result<(), CollectError> {
    let unreadable = |source| CollectError::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(unreadable)?
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry.file_type().map_err(unreadable)?;
        if name.starts_with('.') {
            continue;
        }
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if file_type.is_symlink() {
            if is_yaml {
                out.push(Found {
                    path,
                    text: Err("a symbolic link; links are not followed".into()),
                });
            }
        } else if file_type.is_dir() {
            walk(&path, max_bytes, out)?;
        } else if is_yaml && file_type.is_file() {
            out.push(read(&path, max_bytes));
        }
    }
    Ok(())
}

fn read(path: &Path, max_bytes: usize) -> Found {
    use std::io::Read;
    // Read at most one byte past the limit, whatever the file is (a FIFO, /dev/zero): never unbounded.
    let text = fs::File::open(path)
        .and_then(|f| {
            let mut bytes = Vec::new();
            f.take(max_bytes as u64 + 1).read_to_end(&mut bytes)?;
            Ok(bytes)
        })
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|bytes| {
            if bytes.len() > max_bytes {
                let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                return Err(if size > max_bytes as u64 {
                    format!("file is {size} bytes, over the limit of {max_bytes} bytes")
                } else {
                    format!("file is over the limit of {max_bytes} bytes")
                });
            }
            String::from_utf8(bytes).map_err(|e| {
                format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                )
            })
        });
    Found {
        path: path.to_path_buf(),
        text,
    }
}
