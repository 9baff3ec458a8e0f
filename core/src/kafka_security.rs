//! How a Kafka client proves who it is and checks the brokers: SASL (SCRAM or PLAIN) over
//! TLS. Flags and `STAMPEDE_KAFKA_*` variables (which pods get from Secrets) describe it.

use std::fmt;

use rdkafka::ClientConfig;

use crate::Error;

/// The variables [`KafkaSecurity::from_env`] reads, in the order of
/// [`KafkaSecurity::from_parts`]'s arguments.
pub const ENV: [&str; 6] = [
    "STAMPEDE_KAFKA_SECURITY_PROTOCOL",
    "STAMPEDE_KAFKA_SASL_MECHANISM",
    "STAMPEDE_KAFKA_SASL_USERNAME",
    "STAMPEDE_KAFKA_SASL_PASSWORD",
    "STAMPEDE_KAFKA_CA_FILE",
    "STAMPEDE_KAFKA_CA_PEM",
];

/// SASL and TLS towards the brokers.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// `SASL_SSL`, `SASL_PLAINTEXT` or `SSL`.
    pub protocol: String,
    /// With SASL: the mechanism, user and password.
    pub sasl: Option<Sasl>,
    /// The CA that signed the brokers' certificates (default: the system's).
    pub ca: Option<Ca>,
}

/// SASL credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    /// `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`.
    pub mechanism: String,
    /// User.
    pub username: String,
    /// Password (never printed).
    pub password: String,
}

/// Where the brokers' CA certificate comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Ca {
    /// A PEM file.
    File(String),
    /// PEM text (pods get it from a Secret key, no volume needed).
    Pem(String),
}

impl KafkaSecurity {
    /// From the six settings (see [`ENV`]); `None` for plaintext (no protocol, or
    /// `PLAINTEXT`). Errors name the setting that is wrong or missing.
    pub fn from_parts(
        protocol: Option<&str>,
        mechanism: Option<&str>,
        username: Option<&str>,
        password: Option<&str>,
        ca_file: Option<&str>,
        ca_pem: Option<&str>,
    ) -> Result<Option<Self>, Error> {
        let protocol = match given(protocol).map(str::to_ascii_uppercase) {
            None => "PLAINTEXT".to_owned(),
            Some(p) if ["SASL_SSL", "SASL_PLAINTEXT", "SSL", "PLAINTEXT"].contains(&p.as_str()) => {
                p
            }
            Some(p) => {
                return Err(bad(format!(
                    "{} {p:?}: use SASL_SSL, SASL_PLAINTEXT, SSL or PLAINTEXT",
                    ENV[0]
                )));
            }
        };
        let settings = [mechanism, username, password, ca_file, ca_pem];
        unused_setting(&protocol, settings.map(|v| given(v).is_some()))?;
        if protocol == "PLAINTEXT" {
            return Ok(None);
        }
        let sasl = if protocol.starts_with("SASL_") {
            let mechanism = given(mechanism)
                .unwrap_or("SCRAM-SHA-512")
                .to_ascii_uppercase();
            if !["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"].contains(&mechanism.as_str()) {
                return Err(bad(format!(
                    "{} {mechanism:?}: use SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN",
                    ENV[1]
                )));
            }
            let need = |v: Option<&str>, name: &str| {
                given(v)
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("{protocol} needs {name}")))
            };
            Some(Sasl {
                mechanism,
                username: need(username, ENV[2])?,
                password: need(password, ENV[3])?,
            })
        } else {
            None
        };
        let ca = match (given(ca_file), given(ca_pem)) {
            (Some(_), Some(_)) => {
                return Err(bad(format!("set {} or {}, not both", ENV[4], ENV[5])));
            }
            (Some(f), None) => Some(Ca::File(f.to_owned())),
            (None, Some(p)) => Some(Ca::Pem(p.to_owned())),
            (None, None) => None,
        };
        Ok(Some(Self { protocol, sasl, ca }))
    }

    /// From the process environment (see [`ENV`]).
    pub fn from_env() -> Result<Option<Self>, Error> {
        let v = ENV.map(|name| std::env::var(name).ok());
        Self::from_parts(
            v[0].as_deref(),
            v[1].as_deref(),
            v[2].as_deref(),
            v[3].as_deref(),
            v[4].as_deref(),
            v[5].as_deref(),
        )
    }

    /// Sets librdkafka's properties for it.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.set("security.protocol", &self.protocol);
        if let Some(s) = &self.sasl {
            c.set("sasl.mechanisms", &s.mechanism)
                .set("sasl.username", &s.username)
                .set("sasl.password", &s.password);
        }
        match &self.ca {
            Some(Ca::File(f)) => c.set("ssl.ca.location", f),
            Some(Ca::Pem(p)) => c.set("ssl.ca.pem", p),
            None => c,
        };
    }

    /// The environment that describes it to another process (a pod, a child).
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![(ENV[0], self.protocol.clone())];
        if let Some(s) = &self.sasl {
            env.push((ENV[1], s.mechanism.clone()));
            env.push((ENV[2], s.username.clone()));
            env.push((ENV[3], s.password.clone()));
        }
        match &self.ca {
            Some(Ca::File(f)) => env.push((ENV[4], f.clone())),
            Some(Ca::Pem(p)) => env.push((ENV[5], p.clone())),
            None => {}
        }
        env
    }
}

/// A setting `protocol` would not use is refused rather than ignored: credentials or a CA
/// left beside a missing protocol would otherwise talk plaintext, unauthenticated.
/// `given`: whether the mechanism, username, password, CA file and CA PEM are set.
fn unused_setting(protocol: &str, given: [bool; 5]) -> Result<(), Error> {
    let (unused, instead) = match protocol {
        "PLAINTEXT" => (0..5, "set it to SASL_SSL, SASL_PLAINTEXT or SSL"),
        "SSL" => (0..3, "SSL takes no SASL credentials: use SASL_SSL"),
        "SASL_PLAINTEXT" => (3..5, "SASL_PLAINTEXT has no TLS: use SASL_SSL"),
        _ => (0..0, ""),
    };
    match unused.into_iter().find(|i| given[*i]) {
        Some(i) => Err(bad(format!(
            "{} is set but {} is {protocol}: {instead}, or unset {}",
            ENV[i + 1],
            ENV[0],
            ENV[i + 1]
        ))),
        None => Ok(()),
    }
}

/// A setting that is there and not blank.
fn given(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

fn bad(message: String) -> Error {
    Error::InvalidInput(message)
}

impl fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("sasl", &self.sasl)
            .field("ca", &self.ca)
            .finish()
    }
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ca::File(path) => write!(f, "File({path:?})"),
            Ca::Pem(_) => f.write_str("Pem(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_unless_a_protocol_is_named() {
        assert_eq!(
            KafkaSecurity::from_parts(None, None, None, None, None, None).unwrap(),
            None
        );
        let plain = KafkaSecurity::from_parts(Some("plaintext"), None, None, None, None, None);
        assert_eq!(plain.unwrap(), None);
    }

    #[test]
    fn sasl_ssl_with_scram_and_a_ca_file_and_nothing_secret_printed() {
        let s = KafkaSecurity::from_parts(
            Some("sasl_ssl"),
            None,
            Some("stampede"),
            Some("hunter2"),
            Some("/ca.crt"),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.sasl.as_ref().unwrap().mechanism, "SCRAM-SHA-512");
        let mut c = ClientConfig::new();
        s.apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.password"), Some("hunter2"));
        assert_eq!(c.get("ssl.ca.location"), Some("/ca.crt"));
        assert!(!format!("{s:?}").contains("hunter2"));
        let back = KafkaSecurity::from_parts(
            Some(&s.to_env()[0].1),
            Some(&s.to_env()[1].1),
            Some(&s.to_env()[2].1),
            Some(&s.to_env()[3].1),
            Some(&s.to_env()[4].1),
            None,
        );
        assert_eq!(back.unwrap(), Some(s));
    }

    #[test]
    fn errors_name_the_setting() {
        let err = |p, m, u, pw| {
            KafkaSecurity::from_parts(p, m, u, pw, None, None)
                .unwrap_err()
                .to_string()
        };
        assert!(err(Some("TLS"), None, None, None).contains(ENV[0]));
        assert!(err(Some("SASL_SSL"), Some("GSSAPI"), Some("u"), Some("p")).contains(ENV[1]));
        assert!(err(Some("SASL_SSL"), None, None, Some("p")).contains(ENV[2]));
        assert!(err(Some("SASL_SSL"), None, Some("u"), None).contains(ENV[3]));
        let both = KafkaSecurity::from_parts(Some("SSL"), None, None, None, Some("f"), Some("p"));
        assert!(both.unwrap_err().to_string().contains(ENV[5]));
    }

    #[test]
    fn settings_the_protocol_would_ignore_are_refused() {
        let err = |p, u, ca| {
            KafkaSecurity::from_parts(p, None, u, u, ca, None)
                .unwrap_err()
                .to_string()
        };
        // Credentials without a protocol would talk plaintext, unauthenticated.
        let none = err(None, Some("u"), None);
        assert!(none.contains(ENV[0]) && none.contains(ENV[2]), "{none}");
        assert!(err(Some("PLAINTEXT"), None, Some("ca.pem")).contains(ENV[4]));
        assert!(err(Some("SSL"), Some("u"), None).contains("SASL_SSL"));
        assert!(err(Some("SASL_PLAINTEXT"), Some("u"), Some("ca.pem")).contains(ENV[4]));
        let plain = KafkaSecurity::from_parts(None, None, None, None, None, None);
        assert_eq!(plain.unwrap(), None);
    }
}
