//! The two errors the binary gives their own exit status, so that every layer can say "this is the
//! user's mistake" or "this was stopped on request" and `main.rs` alone turns that into a status:
//! [`UsageError`] (bad input: a setting, a flag, a directory that cannot take a run; exit 2, and
//! nothing is written) and [`Interrupted`] (Ctrl-C or SIGTERM after a checkpoint; exit 130).
//! Both travel inside `anyhow::Error`, whose downcast sees through added context.

use std::fmt;

/// Bad input: a one-line message naming what is wrong and what is allowed (exit status 2).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageError(pub String);

impl UsageError {
    /// "invalid FIELD: VALUE (ALLOWED)".
    pub fn invalid(field: &str, value: impl fmt::Display, allowed: &str) -> UsageError {
        UsageError(format!("invalid {field}: {value} ({allowed})"))
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A run stopped by a signal after writing a checkpoint (exit status 130).
#[derive(Debug)]
pub struct Interrupted(pub String);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// An error chain in one line: what `main.rs` prints, and what a fallback message quotes.
pub fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}
