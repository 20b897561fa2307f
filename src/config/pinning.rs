//! `[pinning]`: which tool definitions the gateway trusts (see `controls::pinning`).

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::validated::Errors;

/// `[pinning]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPinning {
    /// `tofu` (default): a tool's first definition is pinned when first seen; `approve`: only
    /// definitions an operator approved (`palisade tools approve`) are shown; `off`.
    pub mode: Option<PinMode>,
    /// The pin file (default `<data_dir>/pins.json`). Definitions waiting for approval are
    /// kept beside it, in `<file>.pending`.
    pub file: Option<PathBuf>,
    /// Descriptions with invisible Unicode or an injection marker: `flag` (default: audited
    /// and counted, still shown) or `withhold` (also hidden until approved as they are).
    pub suspicious: Option<Suspicious>,
    /// Case-insensitive phrases that flag a definition (default: a short list of common
    /// prompt-injection openers; `[]` for none).
    pub markers: Option<Vec<String>>,
}

/// How definitions come to be trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    /// Trust on first use; a later change is withheld until approved.
    #[default]
    Tofu,
    /// Nothing is shown before an operator approves it.
    Approve,
    /// No pinning (definitions are still scanned when `suspicious` is set).
    Off,
}

/// What happens to a flagged definition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Suspicious {
    /// Audit and count it; show it.
    #[default]
    Flag,
    /// Audit, count and withhold it until an operator approves that exact definition.
    Withhold,
}

/// `[pinning]`, validated.
#[derive(Debug, Clone)]
pub struct PinningConfig {
    /// Mode.
    pub mode: PinMode,
    /// Pin file.
    pub file: PathBuf,
    /// Flagged definitions.
    pub suspicious: Suspicious,
    /// Injection markers, lowercased.
    pub markers: Vec<String>,
}

/// Markers flagged when none are configured: phrases tool-poisoning write-ups show in
/// descriptions, which a tool has no honest reason to say to a model.
pub const DEFAULT_MARKERS: &[&str] = &[
    "ignore previous instructions",
    "ignore all previous instructions",
    "disregard previous instructions",
    "<important>",
    "<system>",
    "do not tell the user",
    "don't tell the user",
];

impl PinningConfig {
    /// The defaults, with the pin file in `data_dir`.
    pub fn defaults(data_dir: &Path) -> PinningConfig {
        pinning(RawPinning::default(), data_dir, &mut Errors::default())
    }

    /// The file of definitions waiting for approval.
    pub fn pending_file(&self) -> PathBuf {
        let mut p = self.file.clone().into_os_string();
        p.push(".pending");
        PathBuf::from(p)
    }
}

pub(super) fn pinning(raw: RawPinning, data_dir: &Path, e: &mut Errors) -> PinningConfig {
    let markers: Vec<String> = match raw.markers {
        Some(m) => m.into_iter().map(|s| s.to_lowercase()).collect(),
        None => DEFAULT_MARKERS.iter().map(|s| (*s).to_owned()).collect(),
    };
    for (i, m) in markers.iter().enumerate() {
        if m.trim().is_empty() {
            e.push(
                format!("pinning.markers[{i}]"),
                "an empty marker would flag every definition",
            );
        }
    }
    PinningConfig {
        mode: raw.mode.unwrap_or_default(),
        file: raw.file.unwrap_or_else(|| data_dir.join("pins.json")),
        suspicious: raw.suspicious.unwrap_or_default(),
        markers,
    }
}
