//! Redaction of secrets and personal data from telemetry before it reaches a language model.
//!
//! Built-in patterns catch the usual secrets (bearer tokens, `password=`/`api_key=`-style
//! assignments, AWS access keys, private-key blocks, JWTs); operators add their own PII patterns
//! (e-mail addresses, card numbers, customer ids …) in the service's config. Each match becomes
//! `[REDACTED:<name>]`, so the model still sees that something was there.

use regex::Regex;

/// Secrets every deployment wants hidden, whatever its config.
const BUILT_IN: &[(&str, &str)] = &[
    ("private_key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    ("bearer", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    ("aws_key", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    (
        "secret",
        r#"(?i)\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret)\b\s*[:=]\s*["']?[^\s"',;&]+"#,
    ),
];

/// Patterns that are redacted by default as personal data; configurable per deployment.
pub const DEFAULT_PII: &[(&str, &str)] = &[("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")];

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

impl Redactor {
    /// The built-in secret patterns plus `pii` (name, regular expression).
    pub fn new(pii: &[(String, String)]) -> Result<Redactor, PatternError> {
        let mut patterns = Vec::new();
        let all = BUILT_IN.iter().map(|(n, p)| (n.to_string(), p.to_string())).chain(pii.iter().cloned());
        for (name, pattern) in all {
            let re = Regex::new(&pattern).map_err(|source| PatternError { name: name.clone(), source })?;
            patterns.push((name, re));
        }
        Ok(Redactor { patterns })
    }

    /// `text` with every match replaced by `[REDACTED:<name>]`.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, re) in &self.patterns {
            if re.is_match(&out) {
                out = re.replace_all(&out, format!("[REDACTED:{name}]").as_str()).into_owned();
            }
        }
        out
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
        assert_eq!(r.patterns.len(), BUILT_IN.len() + DEFAULT_PII.len(), "a built-in pattern failed to compile");
        let line = "login failed for ana@example.com: password=hunter2 header Authorization: Bearer abcdef123456789 key AKIAABCDEFGHIJKLMNOP";
        let out = r.apply(line);
        for secret in ["ana@example.com", "hunter2", "abcdef123456789", "AKIAABCDEFGHIJKLMNOP"] {
            assert!(!out.contains(secret), "{secret} survived: {out}");
        }
        assert!(out.starts_with("login failed for [REDACTED:email]: [REDACTED:secret]"), "{out}");
        assert_eq!(r.apply("db timeout after 2000 ms"), "db timeout after 2000 ms");
    }

    #[test]
    fn configured_patterns_apply_and_bad_ones_name_themselves() {
        let r = Redactor::new(&[("customer".into(), r"\bcust-\d{6}\b".into())]).unwrap();
        assert_eq!(r.apply("order of cust-123456 failed"), "order of [REDACTED:customer] failed");
        let e = Redactor::new(&[("broken".into(), "(".into())]).unwrap_err();
        assert!(e.to_string().starts_with("redaction pattern \"broken\""), "{e}");
    }
}
