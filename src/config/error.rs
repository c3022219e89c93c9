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

impl ConfigError {
    /// A file that is not valid TOML or does not match the schema, told by
    /// the key path, line, column and kind of error, never by the text of
    /// the line: a broken line may hold a secret (an unterminated
    /// `url = "redis://:PASSWORD@..."`), and this message is logged on a
    /// refused reload and printed at start-up and by `wxgate check`.
    pub(crate) fn parse(file: &str, text: &str, e: &toml::de::Error) -> Self {
        let mut message = String::new();
        if let Some(span) = e.span() {
            let (line, column) = line_and_column(text, span.start);
            message.push_str(&format!("line {line}, column {column}: "));
            if let Some(key) = key_path(text, line) {
                message.push_str(&format!("`{key}`: "));
            }
        }
        message.push_str(&kind_of(e.message()));
        Self::Parse {
            file: file.to_string(),
            message,
        }
    }
}

/// 1-based line and column (in characters) of byte `at`.
fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count().saturating_add(1);
    let start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
    let column = before
        .get(start..)
        .map_or(0, |s| s.chars().count())
        .saturating_add(1);
    (line, column)
}

/// The key an error's line sets, under the table it is in (`store.url`):
/// the table header and the text left of `=`, when they are plain keys.
fn key_path(text: &str, line: usize) -> Option<String> {
    let plain = |k: &str| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    let mut table = String::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        let header = l
            .strip_prefix("[[")
            .and_then(|h| h.strip_suffix("]]"))
            .or_else(|| l.strip_prefix('[').and_then(|h| h.strip_suffix(']')))
            .map(str::trim);
        if let Some(h) = header {
            table = if plain(h) {
                h.to_string()
            } else {
                String::new()
            };
        }
        if i.saturating_add(1) == line {
            if header.is_some() {
                return (!table.is_empty()).then_some(table);
            }
            let key = l.split_once('=').map(|(k, _)| k.trim())?;
            if !plain(key) {
                return None;
            }
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

/// What went wrong, without the value that was written: serde's messages
/// quote it for a wrong type or an unknown variant (`invalid type: string
/// "...", expected u64`); they are told by what was expected instead.
/// Messages about keys (unknown, missing, duplicate) name only keys, and the
/// TOML grammar's own messages are fixed texts.
fn kind_of(message: &str) -> String {
    let expected = || {
        message
            .rsplit_once(", expected ")
            .map_or(String::new(), |(_, e)| format!(", expected {e}"))
    };
    if message.starts_with("invalid type") {
        format!("wrong type{}", expected())
    } else if message.starts_with("unknown variant") {
        format!("not one of the values allowed{}", expected())
    } else if message.starts_with("invalid value") || message.starts_with("invalid length") {
        format!("invalid value{}", expected())
    } else if message.starts_with("unknown field")
        || message.starts_with("missing field")
        || message.starts_with("duplicate")
    {
        message.to_string()
    } else {
        format!("not valid TOML: {message}")
    }
}
