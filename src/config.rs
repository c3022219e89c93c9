//! Configuration: one TOML file, read once at start-up into typed values.
//!
//! Four steps, one file each:
//!
//! * `schema`: the file as written (serde; unknown keys are errors);
//! * `resolve`: what it points to, read: secrets from the environment or
//!   files, TLS PEM files, upstream host names, the Redis URL;
//! * `validate`: pure checks and defaults, from strings to typed values;
//! * `model`: the result, [`Config`], which the rest of wxgate reads.
//!
//! Every error names the file, the key and what is wrong. Writing a secret
//! inline is allowed only under the key `secret`, and `wxgate check` warns
//! about it.

mod error;
mod model;
mod resolve;
mod schema;
mod validate;

use std::path::Path;

pub use error::ConfigError;
pub use model::*;
pub use validate::{parse_duration, parse_rate, MIN_JWT_SECRET_BYTES};

impl Config {
    /// Read and validate a config file; environment variables come from `env`.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: file.clone(),
            error,
        })?;
        Self::parse(&text, &file, env)
    }

    /// Parse, resolve and validate TOML text. `file` names it in errors;
    /// relative `secret_file` and `tls_*` paths are taken relative to the
    /// working directory.
    pub fn parse(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: schema::RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::parse(file, text, &e))?;
        let resolved = resolve::resolve(&raw, file, env)?;
        validate::validate(raw, resolved, file)
    }

    /// The sections of `new` that differ from this running config but that a
    /// reload does not apply (listeners, limits, the store, metrics), by name.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        [
            ("[server]", self.server != new.server),
            ("[store]", self.store != new.store),
            ("[metrics]", self.metrics != new.metrics),
            ("[traces]", self.traces != new.traces),
        ]
        .into_iter()
        .filter_map(|(section, changed)| changed.then_some(section))
        .collect()
    }

    /// The effective configuration as TOML, with every secret shown as `***`.
    pub fn render(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
