//! Finding and reading the configuration file.
//!
//! Owns the lookup order (`--config`, `$THRASHGUARD_CONFIG`, /etc/thrashguard/thrashguard.toml,
//! built-in defaults when the default file is absent) and the mapping of a bad file to exit
//! code 78. Parsing and validation live in `thrashguard_core::config`.

use std::path::{Path, PathBuf};

use thrashguard_core::config::Config;

/// The default location.
pub const DEFAULT_PATH: &str = "/etc/thrashguard/thrashguard.toml";

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Invalid content.
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        source: thrashguard_core::config::ConfigError,
    },
}

/// Load `explicit` (from `--config` or the environment), else the default file when it
/// exists, else the built-in defaults. Returns the config and where it came from.
pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), LoadError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
        None => return Ok((Config::default(), None)),
    };
    let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Read { path: path.clone(), source })?;
    let cfg = Config::parse(&text).map_err(|source| LoadError::Invalid { path: path.clone(), source })?;
    Ok((cfg, Some(path)))
}
