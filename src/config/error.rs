//! [`ConfigError`]: what is wrong with a config, naming the file and the key.

/// A configuration error. Its message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the file: {error}")]
    Read { file: String, error: std::io::Error },
    /// The file is not valid TOML or does not match the schema (unknown key, wrong type).
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    /// A key has a value that is not acceptable.
    #[error("{file}: `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}
