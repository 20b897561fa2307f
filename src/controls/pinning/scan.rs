//! Looks for text a model would read but a person reviewing the definition would not see
//! (invisible and direction-changing characters), and for configured injection markers.

use serde_json::Value;

/// What a definition was flagged for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// Tag characters, zero-width or bidirectional controls, other invisible code points, or
    /// control characters (terminal escapes).
    Invisible,
    /// A configured injection marker.
    Marker,
}

impl Flag {
    /// The audit reason.
    pub fn reason(self) -> &'static str {
        match self {
            Flag::Invisible => "suspicious_invisible",
            Flag::Marker => "suspicious_marker",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Flag::Invisible => "invisible",
            Flag::Marker => "marker",
        }
    }
}

/// Whether `c` renders as nothing (or reorders what is around it) in a typical viewer.
pub fn invisible(c: char) -> bool {
    matches!(c,
        // C0 controls other than tab and newlines (ESC starts terminal escapes), DEL, C1.
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Soft hyphen, Arabic letter mark, Mongolian vowel separator.
        | '\u{ad}' | '\u{61c}' | '\u{180e}'
        // Zero-width space/joiners, LRM/RLM; bidi embeddings and overrides; word joiner and
        // invisible operators; bidi isolates; deprecated format characters.
        | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        // Byte-order mark (zero-width no-break space).
        | '\u{feff}'
        // Interlinear annotation controls.
        | '\u{fff9}'..='\u{fffb}'
        // Tag characters (the "ASCII smuggling" block).
        | '\u{e0000}'..='\u{e007f}'
        // Variation selectors supplement (no emoji uses these; used to hide bytes).
        | '\u{e0100}'..='\u{e01ef}'
    )
}

/// The flags of a definition: every string in it (keys too) and the server's instructions.
/// `markers` are lowercase.
pub fn scan(instructions: Option<&str>, tool: &Value, markers: &[String]) -> Vec<Flag> {
    let mut found = Vec::new();
    let mut text = |s: &str| {
        if !found.contains(&Flag::Invisible) && s.chars().any(invisible) {
            found.push(Flag::Invisible);
        }
        if !found.contains(&Flag::Marker) && !markers.is_empty() {
            let lower = s.to_lowercase();
            if markers.iter().any(|m| lower.contains(m.as_str())) {
                found.push(Flag::Marker);
            }
        }
    };
    if let Some(i) = instructions {
        text(i);
    }
    walk(tool, &mut text);
    found.sort();
    found
}

fn walk(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| walk(v, f)),
        Value::Object(o) => {
            for (k, v) in o {
                f(k);
                walk(v, f);
            }
        }
        _ => {}
    }
}
