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

/// `name` as a reader that says it reads `format` (`<name>@<format>`): how relays name
/// themselves in the outbox groups and writers their Kafka clients.
pub fn named(name: &str, format: u32) -> String {
    format!("{name}@{format}")
}

/// The format a reader named `name` reads: what its `@N` suffix says, and 1 (one coupon per
/// entry or message, what readers from before formats were named read) for any other name.
pub fn format_of(name: &str) -> u32 {
    name.rsplit_once('@')
        .and_then(|(_, n)| n.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_says_the_format_its_reader_reads() {
        assert_eq!(format_of(&named("host-serve", 2)), 2);
        for (name, format) in [
            ("host-serve", 1),
            ("", 1),
            ("odd@name", 1),
            ("a@b@3", 3),
            ("x@0", 1),
            ("x@", 1),
        ] {
            assert_eq!(format_of(name), format, "{name:?}");
        }
    }

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
