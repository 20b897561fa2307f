//! `[output]`: checks on tool results (see `controls::output`).

use schemars::JsonSchema;
use serde::Deserialize;

/// `[output]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    /// Known-format secrets in tool results: `redact` (default) replaces them with
    /// `[REDACTED:kind]`, `audit` only reports them, `off` does neither.
    pub secrets: Option<SecretMode>,
}

/// What to do with secrets found in tool results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretMode {
    /// Replace them, and audit each kind.
    #[default]
    Redact,
    /// Audit them, pass the result unchanged.
    Audit,
    /// Do not look.
    Off,
}

/// `[output]`, validated.
#[derive(Debug, Clone, Default)]
pub struct OutputConfig {
    /// Secret handling.
    pub secrets: SecretMode,
}

pub(super) fn output(raw: RawOutput) -> OutputConfig {
    OutputConfig {
        secrets: raw.secrets.unwrap_or_default(),
    }
}
