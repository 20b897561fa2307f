//! Known-format secrets in text: private-key blocks, cloud access keys, common API-token
//! prefixes, JWTs and payment card numbers (Luhn-valid, with a card network's prefix and
//! length). Formats are matched, not guessed: no entropy heuristics, whose false positives
//! users of other gateways complain about.

use std::sync::LazyLock;

use regex::Regex;

/// What was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `-----BEGIN … PRIVATE KEY-----` blocks.
    PrivateKey,
    /// AWS access key ids (`AKIA…`, `ASIA…`).
    AwsAccessKey,
    /// Google API keys (`AIza…`).
    GcpApiKey,
    /// GitHub tokens (`ghp_…`, `github_pat_…`).
    GithubToken,
    /// Slack tokens (`xoxb-…`).
    SlackToken,
    /// Stripe live keys (`sk_live_…`).
    StripeKey,
    /// OpenAI / Anthropic style keys (`sk-…`, `sk-ant-…`).
    ApiKey,
    /// JSON Web Tokens.
    Jwt,
    /// Payment card numbers.
    Card,
}

/// Every kind, in the order of [`Kind::bit`].
pub const ALL: [Kind; 9] = [
    Kind::PrivateKey,
    Kind::AwsAccessKey,
    Kind::GcpApiKey,
    Kind::GithubToken,
    Kind::SlackToken,
    Kind::StripeKey,
    Kind::ApiKey,
    Kind::Jwt,
    Kind::Card,
];

impl Kind {
    /// The config and log name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PrivateKey => "private_key",
            Kind::AwsAccessKey => "aws_access_key",
            Kind::GcpApiKey => "gcp_api_key",
            Kind::GithubToken => "github_token",
            Kind::SlackToken => "slack_token",
            Kind::StripeKey => "stripe_key",
            Kind::ApiKey => "api_key",
            Kind::Jwt => "jwt",
            Kind::Card => "card",
        }
    }

    /// Audit reason when redacted.
    pub fn redacted(self) -> &'static str {
        match self {
            Kind::PrivateKey => "redacted_private_key",
            Kind::AwsAccessKey => "redacted_aws_access_key",
            Kind::GcpApiKey => "redacted_gcp_api_key",
            Kind::GithubToken => "redacted_github_token",
            Kind::SlackToken => "redacted_slack_token",
            Kind::StripeKey => "redacted_stripe_key",
            Kind::ApiKey => "redacted_api_key",
            Kind::Jwt => "redacted_jwt",
            Kind::Card => "redacted_card",
        }
    }

    /// Audit reason when only detected (audit-only mode).
    pub fn detected(self) -> &'static str {
        match self {
            Kind::PrivateKey => "detected_private_key",
            Kind::AwsAccessKey => "detected_aws_access_key",
            Kind::GcpApiKey => "detected_gcp_api_key",
            Kind::GithubToken => "detected_github_token",
            Kind::SlackToken => "detected_slack_token",
            Kind::StripeKey => "detected_stripe_key",
            Kind::ApiKey => "detected_api_key",
            Kind::Jwt => "detected_jwt",
            Kind::Card => "detected_card",
        }
    }

    /// One bit per kind, for sets.
    pub fn bit(self) -> u16 {
        1 << (ALL.iter().position(|k| *k == self).unwrap_or(0) as u16)
    }

    /// The kind of a config name.
    pub fn parse(name: &str) -> Option<Kind> {
        ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The exact patterns, one named group per kind, matched over decoded strings in one pass.
static EXACT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?P<private_key>-----BEGIN[A-Z0-9 ]* PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z0-9 ]* PRIVATE KEY(?: BLOCK)?-----|\z))",
        r"|(?P<aws_access_key>\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b)",
        r"|(?P<gcp_api_key>\bAIza[0-9A-Za-z_\-]{35}(?:\b|\z))",
        r"|(?P<github_token>\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b)",
        r"|(?P<slack_token>\bxox[abposr]-[A-Za-z0-9\-]{10,}\b)",
        r"|(?P<stripe_key>\b(?:sk|rk)_live_[A-Za-z0-9]{20,}\b)",
        r"|(?P<api_key>\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{32,})",
        r"|(?P<jwt>\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,})",
        r"|(?P<card>\b\d(?:[ \-]?\d){12,18}\b)",
    ))
    .expect("secret patterns compile")
});

/// A cheap test over raw JSON bytes: could anything in them be a secret once decoded? No word
/// boundaries (escapes such as `\n` sit right before a value), and any `\u` escape counts, as
/// it could spell one.
static MAYBE: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    regex::bytes::Regex::new(
        r"-----BEGIN|AKIA|ASIA|ABIA|ACCA|AIza|gh[pousr]_|github_pat_|xox[abposr]-|_live_|sk-|eyJ|\d{4}[ \-]?\d{4}[ \-]?\d{4}|\\u",
    )
    .expect("prefilter compiles")
});

/// Whether raw JSON text may hold a secret (false: it certainly holds none).
pub fn maybe(raw: &[u8]) -> bool {
    MAYBE.is_match(raw)
}

/// `text` with every secret whose kind is not in `allowed` replaced by `[REDACTED:kind]`, and
/// the set of kinds found (allowed ones excluded); `None` when nothing was found.
pub fn redact(text: &str, allowed: u16) -> Option<(String, u16)> {
    let mut out = String::new();
    let mut last = 0;
    let mut found = 0u16;
    for caps in EXACT.captures_iter(text) {
        let Some((kind, m)) = ALL
            .into_iter()
            .find_map(|k| caps.name(k.name()).map(|m| (k, m)))
        else {
            continue;
        };
        if kind.bit() & allowed != 0 || (kind == Kind::Card && !is_card(m.as_str())) {
            continue;
        }
        found |= kind.bit();
        out.push_str(&text[last..m.start()]);
        out.push_str("[REDACTED:");
        out.push_str(kind.name());
        out.push(']');
        last = m.end();
    }
    if found == 0 {
        return None;
    }
    out.push_str(&text[last..]);
    Some((out, found))
}

/// A card number: 13-19 digits (spaces or dashes between them ignored) that pass the Luhn
/// check and start as a card network's numbers do, at a length it issues. Requiring the
/// prefix keeps order ids and nanosecond timestamps (one in ten passes Luhn) out.
pub fn is_card(text: &str) -> bool {
    let digits: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let n = digits.len();
    let prefix = |k: usize| {
        digits
            .iter()
            .take(k)
            .fold(0u32, |a, d| a * 10 + u32::from(*d))
    };
    let network = match digits.first() {
        Some(4) => matches!(n, 13 | 16 | 19),
        Some(5) => (51..=55).contains(&prefix(2)) && n == 16,
        Some(2) => (2221..=2720).contains(&prefix(4)) && n == 16,
        Some(3) => {
            (matches!(prefix(2), 34 | 37) && n == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&n))
                || ((matches!(prefix(2), 36 | 38 | 39) || (300..=305).contains(&prefix(3)))
                    && (14..=19).contains(&n))
        }
        Some(6) => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)))
                && (16..=19).contains(&n)
        }
        _ => false,
    };
    network && luhn(&digits)
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}
