//! Strict parsing with errors located by file, field path, line and column (a person
//! fixing an image has only the console line to go on), for runtime.json and runtime.yml
//! and for any other document lkinit reads (config.json, service.json).

use std::fmt;
use std::path::{Path, PathBuf};

/// A runtime config file that cannot be used, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Path of the offending field, e.g. `interfaces[0].createInRoot`.
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    /// A value that parsed but is not allowed: no line to point at, the field says where.
    pub fn invalid_field(file: &Path, (field, message): (String, String)) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: Some(field),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ": line {l}")?;
            if let Some(c) = self.column {
                write!(f, " column {c}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The path of the field an error is in; where the parser could not tell the last step (a
/// syntax error inside an object: `?`), up to the last step it knows.
fn field_path(path: &serde_path_to_error::Path) -> Option<String> {
    let s = path.to_string();
    let known = match s.find('?') {
        Some(i) => s[..i].trim_end_matches('.'),
        None => &s,
    };
    (known != "." && !known.is_empty()).then(|| known.to_string())
}

/// Parses any JSON document with errors located by line and field path (also used for
/// config.json).
pub fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let config = result.map_err(|e| {
        let field = field_path(e.path());
        let inner = e.into_inner();
        let (line, column) = (inner.line(), inner.column());
        let full = inner.to_string();
        // serde_json appends the location to its message; it is reported separately.
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        ConfigError {
            file: file.to_path_buf(),
            line: (line > 0).then_some(line),
            column: (line > 0).then_some(column),
            field,
            message,
        }
    })?;
    // serde_json stops at the end of the value; trailing garbage is caught here.
    de.end().map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: Some(e.line()),
        column: Some(e.column()),
        field: None,
        message: "trailing characters after the JSON document".into(),
    })?;
    Ok(config)
}

/// Parses any YAML document with errors located by line and field path.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
) -> Result<T, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    result.map_err(|e| {
        let field = field_path(e.path());
        let inner = e.into_inner();
        let location = inner.location();
        let mut message = inner.to_string();
        // The YAML parser prefixes its own path and appends the location: both are
        // reported in their own slots. Its path stops at the parent of a value whose own
        // check failed (`logs: ...` for `logs.maxSize`): any leading part of ours is it.
        if let Some(f) = &field {
            let cuts = f.match_indices(['.', '[']).map(|(i, _)| i).rev();
            if let Some(rest) = std::iter::once(f.len())
                .chain(cuts)
                .find_map(|i| message.strip_prefix(&format!("{}: ", &f[..i])))
            {
                message = rest.to_string();
            }
        }
        if let Some(loc) = &location {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(rest) = message.strip_suffix(&suffix) {
                message = rest.to_string();
            }
        }
        ConfigError {
            file: file.to_path_buf(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            field,
            message,
        }
    })
}
