//! Redaction of secrets and personal data from every string that leaves the process toward a
//! language model or a notification.
//!
//! A built-in catalogue catches the usual secrets in the shapes they take in telemetry: PEM blocks
//! (a lone header too), cloud keys, `key=value` and JSON assignments whose key names a secret in any
//! style (`db_password`, `AWS_SECRET_ACCESS_KEY`, `"clientSecret"`), `Authorization` headers (bearer
//! and basic), credentials in URLs (`redis://:pass@host`) and URL query tokens, common vendor
//! tokens (GitHub, GitLab, Slack, Stripe, Google, OpenAI, npm, SendGrid), JWTs, and payment card
//! numbers that pass the Luhn check. Operators add their own PII patterns (e-mail addresses by
//! default, customer ids …) in the service's config. A match becomes `[REDACTED:<name>]`, so the
//! model still sees that something was there; where a pattern has a group named `s`, only that
//! group is replaced and the key or the URL's host stays readable.

use regex::{Captures, Regex};
use serde_json::Value;
use std::sync::OnceLock;

/// Words that make a key name a secret's, in any style (`db_password`, `secretKey`, `X-Api-Key`).
const SECRET_WORDS: &str = r"(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credentials?|signature|session[_-]?id|cookie)";

/// Secrets every deployment wants hidden, whatever its config (name, pattern). Order matters: a
/// whole PEM block or URL goes before the key-value rule could cut it in two.
fn built_in() -> Vec<(&'static str, String)> {
    vec![
        (
            "private_key",
            r"-----BEGIN [A-Z0-9 ]{1,64}-----(?:[\s\S]*?-----END [A-Z0-9 ]{1,64}-----|(?:[\s\\n]*[A-Za-z0-9+/=]{16,})*)"
                .into(),
        ),
        ("url_credentials", r"(?i)\b[a-z][a-z0-9+.-]{1,20}://(?P<s>[^\s/@:]*:[^\s/@]+)@".into()),
        ("authorization", r#"(?i)\bauthorization["']?\s*[:=]\s*["']?(?P<s>(?:[a-z]+\s+)?[A-Za-z0-9._~+/=-]{6,})"#.into()),
        ("bearer", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}".into()),
        (BASIC, r"(?i)\bbasic\s+[A-Za-z0-9+/]{8,}={0,2}".into()),
        ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}".into()),
        ("aws_key", r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}".into()),
        ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})".into()),
        ("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}".into()),
        ("slack_token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}".into()),
        ("slack_webhook", r"https://hooks\.slack\.com/[A-Za-z0-9/_-]+".into()),
        ("stripe_key", r"\b(?:sk|rk|pk|whsec)_(?:live|test)_[A-Za-z0-9]{10,}".into()),
        ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}".into()),
        ("openai_key", r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}".into()),
        ("npm_token", r"\bnpm_[A-Za-z0-9]{36}".into()),
        ("sendgrid_key", r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}".into()),
        (
            SECRET,
            format!(
                r#"(?i)[A-Za-z0-9_.-]*{SECRET_WORDS}[A-Za-z0-9_.-]*\\?["']?\s*[:=]\s*(?P<s>\\?"[^"\n]*?\\?"|'[^'\n]*'|[^\s"',;&}}<>\\]+)"#
            ),
        ),
        // Card brands' prefixes (Visa, Mastercard, Amex, Discover, JCB, Diners), 13–19 digits with
        // optional spaces or dashes; kept only when the Luhn check passes (`card_prefix`).
        (
            CARD,
            r"\b(?:4\d{3}|5[1-5]\d{2}|2[2-7]\d{2}|3[47]\d{2}|3[05689]\d{2}|6(?:011|5\d{2}|4[4-9]\d))(?:[ -]?\d){9,15}\b"
                .into(),
        ),
    ]
}

const CARD: &str = "card_number";
const BASIC: &str = "basic_auth";
const SECRET: &str = "secret";

/// The personal-data patterns redacted by default (kept with the configuration's schema).
pub use culprit_readers::config::DEFAULT_PII;

#[derive(Debug, thiserror::Error)]
#[error("redaction pattern {name:?}: {source}")]
pub struct PatternError {
    pub name: String,
    pub source: regex::Error,
}

/// A compiled set of patterns.
#[derive(Debug, Clone)]
pub struct Redactor {
    patterns: Vec<(String, Regex)>,
}

impl Default for Redactor {
    /// The built-in secret patterns and the default PII patterns.
    fn default() -> Self {
        let pii: Vec<(String, String)> = DEFAULT_PII.iter().map(|(n, p)| (n.to_string(), p.to_string())).collect();
        // The built-in patterns are constants covered by a test.
        Redactor::new(&pii).unwrap_or(Redactor { patterns: Vec::new() })
    }
}

/// The default redactor, compiled once: the last guard in front of every request to a model.
pub fn guard() -> &'static Redactor {
    static R: OnceLock<Redactor> = OnceLock::new();
    R.get_or_init(Redactor::default)
}

/// True when `digits` (13 to 19 of them) pass the Luhn check.
fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2 == 1, d * 2) {
            (true, twice) if twice > 9 => twice - 9,
            (true, twice) => twice,
            _ => d,
        })
        .sum();
    (13..=19).contains(&digits.len()) && sum.is_multiple_of(10)
}

/// The byte length of the longest prefix of `text` whose digits are a card number.
fn card_prefix(text: &str) -> Option<usize> {
    let digits: Vec<(usize, u32)> =
        text.char_indices().filter_map(|(i, c)| c.to_digit(10).map(|d| (i + c.len_utf8(), d))).collect();
    (13..=digits.len().min(19)).rev().find_map(|n| {
        let ds: Vec<u32> = digits[..n].iter().map(|d| d.1).collect();
        luhn(&ds).then(|| digits[n - 1].0)
    })
}

/// Whether a `Basic …` value looks like base64 credentials, not a word (`Basic database check`).
fn looks_encoded(m: &str) -> bool {
    let value = m.split_whitespace().nth(1).unwrap_or("");
    value.len() >= 12 && value.chars().any(|c| c.is_ascii_digit() || matches!(c, '+' | '/' | '='))
}

/// A number too small to be a secret (`prompt_tokens=512`, `token_refresh_ms=1840`).
fn is_small_number(v: &str) -> bool {
    let v = v.trim_matches(|c| c == '"' || c == '\\' || c == '\'');
    !v.is_empty() && v.len() < 6 && v.chars().all(|c| c.is_ascii_digit() || c == '.')
}

impl Redactor {
    /// The built-in secret patterns plus `pii` (name, regular expression).
    pub fn new(pii: &[(String, String)]) -> Result<Redactor, PatternError> {
        let mut patterns = Vec::new();
        let all = built_in().into_iter().map(|(n, p)| (n.to_string(), p)).chain(pii.iter().cloned());
        for (name, pattern) in all {
            let re = Regex::new(&pattern).map_err(|source| PatternError { name: name.clone(), source })?;
            patterns.push((name, re));
        }
        Ok(Redactor { patterns })
    }

    /// `text` with every match replaced by `[REDACTED:<name>]` (only the `s` group, where the
    /// pattern has one).
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, re) in &self.patterns {
            if !re.is_match(&out) {
                continue;
            }
            let tag = format!("[REDACTED:{name}]");
            out = re
                .replace_all(&out, |c: &Captures| {
                    let whole = c.get(0).map_or("", |m| m.as_str());
                    if name == CARD {
                        // The longest prefix that is a card (the match may have taken the digits
                        // of an amount or a date after it).
                        return match card_prefix(whole) {
                            Some(end) => format!("{tag}{}", &whole[end..]),
                            None => whole.to_string(),
                        };
                    }
                    if name == BASIC && !looks_encoded(whole) {
                        return whole.to_string();
                    }
                    if name == SECRET && c.name("s").is_some_and(|v| is_small_number(v.as_str())) {
                        return whole.to_string();
                    }
                    match (c.get(0), c.name("s")) {
                        (Some(w), Some(s)) => {
                            let (a, b) = (s.start() - w.start(), s.end() - w.start());
                            format!("{}{tag}{}", &whole[..a], &whole[b..])
                        }
                        _ => tag.clone(),
                    }
                })
                .into_owned();
        }
        out
    }

    /// `value` with every string in it redacted; a string under a key that names a secret
    /// (`"password"`, `"apiKey"`) is replaced whole.
    pub fn apply_json(&self, value: &Value) -> Value {
        static KEY: OnceLock<Option<Regex>> = OnceLock::new();
        let key = KEY.get_or_init(|| Regex::new(&format!("(?i){SECRET_WORDS}")).ok());
        match value {
            Value::String(s) => Value::String(self.apply(s)),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.apply_json(v)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| match key {
                        Some(re) if re.is_match(k) && v.is_string() => (k.clone(), Value::from("[REDACTED:secret]")),
                        _ => (k.clone(), self.apply_json(v)),
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Every shape of the catalogue, as telemetry carries it; each is a (text, secret) pair. The
/// agent's test at the real model server sends the same list.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("aws_secret_access_key=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"),
    ("AWS_SECRET_ACCESS_KEY=Zq9T2vYc8PLmN4rT6uW1xA3sD5fG7hJ9kL0pQ2wE", "Zq9T2vYc8PLmN4rT6uW1xA3sD5fG7hJ9kL0pQ2wE"),
    ("env AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE set", "AKIAIOSFODNN7EXAMPLE"),
    ("connect failed db_password=Tr0ub4dor&3 host=db1", "Tr0ub4dor"),
    (r#"{"user": "svc", "password": "correct horse battery"}"#, "correct horse battery"),
    (r#"config {"clientSecret":"s3cr3t-v4lue-991"}"#, "s3cr3t-v4lue-991"),
    ("GET /callback?code=1&access_token=ya29.a0AfH6SMBx9QwErTy HTTP/1.1", "ya29.a0AfH6SMBx9QwErTy"),
    ("upstream request header Authorization: Basic YWRtaW46aHVudGVyMg==", "YWRtaW46aHVudGVyMg"),
    ("header authorization=Bearer eyZ0eXAiOiJKV1QiLCJhbGciOi", "eyZ0eXAiOiJKV1QiLCJhbGciOi"),
    ("redis dial redis://:p4ssw0rd-redis@cache-1:6379/0 refused", "p4ssw0rd-redis"),
    ("postgres://orders:pgS3cret!@db.internal:5432/orders timeout", "pgS3cret!"),
    ("cloning with ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("slack post with xoxb-2048-1024-aBcDeFgHiJkLmNoPqRsTuV failed", "xoxb-2048-1024-aBcDeFgHiJkLmNoPqRsTuV"),
    ("charge via sk_live_4eC39HqLyjWDarjtT1zdp7dc refused", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("payment declined card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111"),
    ("payment declined card=5500-0000-0000-0004", "5500-0000-0000-0004"),
    ("key material: -----BEGIN RSA PRIVATE KEY----- (truncated)", "BEGIN RSA PRIVATE KEY"),
    (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
    ),
    ("gitlab glpat-xY3zW8vU2tS6rQ4pO1nM push", "glpat-xY3zW8vU2tS6rQ4pO1nM"),
    ("maps key AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    ("webhook https://hooks.slack.com/services/T000/B000/XXXXXXXX failed", "hooks.slack.com/services/T000"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_pii_are_replaced_and_the_rest_kept() {
        let r = Redactor::default();
        assert_eq!(r.patterns.len(), built_in().len() + DEFAULT_PII.len(), "a built-in pattern failed to compile");
        let line = "login failed for ana@example.com: password=hunter2 header Authorization: Bearer abcdef123456789 key AKIAABCDEFGHIJKLMNOP";
        let out = r.apply(line);
        for secret in ["ana@example.com", "hunter2", "abcdef123456789", "AKIAABCDEFGHIJKLMNOP"] {
            assert!(!out.contains(secret), "{secret} survived: {out}");
        }
        assert!(out.starts_with("login failed for [REDACTED:email]: password=[REDACTED:secret]"), "{out}");
        assert_eq!(r.apply("db timeout after 2000 ms"), "db timeout after 2000 ms");
    }

    #[test]
    fn every_entry_of_the_catalogue_is_caught_raw_and_json_escaped() {
        let r = Redactor::default();
        for (text, secret) in CATALOGUE {
            let out = r.apply(text);
            assert!(!out.contains(secret), "{secret:?} survived in {out:?}");
            assert!(out.contains("[REDACTED:"), "{out}");
            // As a tool's JSON output carries it: quotes and newlines escaped.
            let escaped = serde_json::to_string(text).unwrap();
            let out = r.apply(&escaped);
            let secret_escaped = serde_json::to_string(secret).unwrap();
            assert!(!out.contains(secret_escaped.trim_matches('"')), "{secret:?} survived escaped in {out:?}");
        }
    }

    #[test]
    fn keys_hosts_and_ordinary_numbers_stay_readable() {
        let r = Redactor::default();
        assert_eq!(r.apply("redis://:pw1234@cache-1:6379"), "redis://[REDACTED:url_credentials]@cache-1:6379");
        assert_eq!(r.apply("db_password=x1"), "db_password=[REDACTED:secret]");
        // Not secrets: a number failing Luhn, an epoch in milliseconds, a trace id, English,
        // small counts under a secret-looking key.
        for plain in [
            "order 4111 1111 1111 1112 failed",
            "at 1733400000123 ms",
            "trace 4bf92f3577b34da6a3ce929d0e0e4736",
            "Basic database health check passed",
            "prompt_tokens=512 token_refresh_ms=1840",
        ] {
            assert_eq!(r.apply(plain), plain);
        }
        // A card followed by an amount or an expiry date.
        assert_eq!(r.apply("charge 4111 1111 1111 1111 99.00 EUR"), "charge [REDACTED:card_number] 99.00 EUR");
        assert_eq!(r.apply("card 4111111111111111 12/29"), "card [REDACTED:card_number] 12/29");
        let v = serde_json::json!({ "password": "hunter2", "nested": [{ "apiKey": "k-123" }], "msg": "ok" });
        let out = r.apply_json(&v).to_string();
        assert!(!out.contains("hunter2") && !out.contains("k-123") && out.contains("\"msg\":\"ok\""), "{out}");
    }

    #[test]
    fn configured_patterns_apply_and_bad_ones_name_themselves() {
        let r = Redactor::new(&[("customer".into(), r"\bcust-\d{6}\b".into())]).unwrap();
        assert_eq!(r.apply("order of cust-123456 failed"), "order of [REDACTED:customer] failed");
        let e = Redactor::new(&[("broken".into(), "(".into())]).unwrap_err();
        assert!(e.to_string().starts_with("redaction pattern \"broken\""), "{e}");
    }
}
