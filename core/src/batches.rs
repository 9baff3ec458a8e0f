//! When several issuances travel as one: an issue script call's coupons as one outbox entry
//! (`serve --outbox-batches`), a batch entry's coupons as one Kafka message
//! (`--relay-message-batches`). `auto` follows what the readers on the other side say they
//! read; `always` and `never` override it.

use std::fmt;
use std::str::FromStr;

/// When several issuances travel as one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Batches {
    /// Once every live reader on the other side reads batches (outbox entries: the
    /// campaign's meta says its relays read format 2; Kafka messages: every consumer of the
    /// topic is a writer reading format 2).
    #[default]
    Auto,
    /// Always: only where every reader is known to read them (tests, benchmarks).
    Always,
    /// Never: one per coupon, whatever the readers read.
    Never,
}

impl FromStr for Batches {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "always" | "true" => Ok(Self::Always),
            "never" | "false" => Ok(Self::Never),
            other => Err(format!("expected auto, always or never, got {other:?}")),
        }
    }
}

impl fmt::Display for Batches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Always => "always",
            Self::Never => "never",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_reads_from_its_names_and_the_old_boolean() {
        for (s, m) in [
            ("auto", Batches::Auto),
            ("always", Batches::Always),
            ("true", Batches::Always),
            ("never", Batches::Never),
            ("false", Batches::Never),
        ] {
            assert_eq!(s.parse::<Batches>(), Ok(m));
        }
        assert_eq!(Batches::Never.to_string(), "never");
        let err = "sometimes".parse::<Batches>().unwrap_err();
        assert!(err.contains("auto, always or never"), "{err}");
    }
}
