//! Checks and defaults for single spec fields: connections, container resources,
//! quantities and durations.

use crate::Error;
use crate::crd::{
    Connection, CouponCampaignSpec, DEFAULT_AUTH_SECRET, DEFAULT_AUTH_SECRET_KEY, Resources,
};
use crate::validate::{AuthKeys, AuthPlan, Endpoint};

pub(super) fn inner(e: stampede_core::Error) -> String {
    match e {
        stampede_core::Error::InvalidInput(m) => m,
        other => other.to_string(),
    }
}

pub(super) fn endpoint(
    field: &str,
    c: Option<&Connection>,
    default: &str,
) -> Result<Endpoint, Error> {
    match c {
        None => Ok(Endpoint::Value(default.to_owned())),
        Some(Connection {
            url: Some(u),
            secret_ref: None,
        }) if !u.trim().is_empty() => Ok(Endpoint::Value(u.clone())),
        Some(Connection {
            url: None,
            secret_ref: Some(s),
        }) if !s.name.is_empty() && !s.key.is_empty() => Ok(Endpoint::Secret {
            name: s.name.clone(),
            key: s.key.clone(),
        }),
        Some(_) => Err(Error::InvalidSpec(format!(
            "{field}: set exactly one of url and secretRef (with name and key)"
        ))),
    }
}

/// `spec.auth` with its defaults; load tests need an HS256 secret to mint tokens with.
pub(super) fn auth(spec: &CouponCampaignSpec) -> Result<AuthPlan, Error> {
    let a = &spec.auth;
    let invalid = |m: &str| Err(Error::InvalidSpec(format!("spec.auth.{m}")));
    if a.issuer.trim().is_empty() || a.audience.trim().is_empty() {
        return invalid("issuer and spec.auth.audience must not be empty");
    }
    let keys = match (&a.hs256_secret_ref, &a.jwks_url) {
        (Some(_), Some(_)) => return invalid("hs256SecretRef and jwksUrl: set at most one"),
        (Some(s), None) if s.name.is_empty() || s.key.is_empty() => {
            return invalid("hs256SecretRef needs a name and a key");
        }
        (Some(s), None) => AuthKeys::Hs256 {
            name: s.name.clone(),
            key: s.key.clone(),
        },
        (None, Some(u)) if !u.starts_with("http://") => return invalid("jwksUrl must be http://"),
        (None, Some(_)) if !spec.load_tests.is_empty() => {
            return invalid(
                "jwksUrl: load tests need hs256SecretRef (their runners mint HS256 tokens)",
            );
        }
        (None, Some(u)) => AuthKeys::JwksUrl(u.clone()),
        (None, None) => AuthKeys::Hs256 {
            name: DEFAULT_AUTH_SECRET.into(),
            key: DEFAULT_AUTH_SECRET_KEY.into(),
        },
    };
    Ok(AuthPlan {
        issuer: a.issuer.clone(),
        audience: a.audience.clone(),
        keys,
    })
}

/// Fills cpu/memory requests and limits the spec leaves out, and rejects anything that is
/// not a Kubernetes quantity (the API server would refuse the Deployment later, less
/// clearly).
pub(super) fn resources(
    field: &str,
    given: Option<&Resources>,
    requests: (&str, &str),
    limits: (&str, &str),
) -> Result<Resources, Error> {
    let mut r = given.cloned().unwrap_or_default();
    let named = r.clone();
    for (map, (cpu, mem), which) in [
        (&mut r.requests, requests, "requests"),
        (&mut r.limits, limits, "limits"),
    ] {
        for (k, v) in map.iter() {
            if !is_quantity(v) {
                return Err(Error::InvalidSpec(format!(
                    "{field}.{which}.{k}: {v:?} is not a quantity (e.g. 500m, 2, 256Mi)"
                )));
            }
        }
        map.entry("cpu".into()).or_insert_with(|| cpu.into());
        map.entry("memory".into()).or_insert_with(|| mem.into());
    }
    // A request above its limit is refused by the API server: a default gives way to what
    // the spec named on the other side; both named so is the spec's mistake, said here.
    for k in ["cpu", "memory"] {
        // Both are quantities: checked above.
        let (req, lim) = (quantity(&r.requests[k]), quantity(&r.limits[k]));
        if req <= lim {
            continue;
        }
        match (named.requests.contains_key(k), named.limits.contains_key(k)) {
            (true, false) => _ = r.limits.insert(k.into(), r.requests[k].clone()),
            (false, true) => _ = r.requests.insert(k.into(), r.limits[k].clone()),
            _ => {
                let (req, lim) = (&r.requests[k], &r.limits[k]);
                return Err(Error::InvalidSpec(format!(
                    "{field}: requests.{k} ({req}) is above limits.{k} ({lim})"
                )));
            }
        }
    }
    Ok(r)
}

pub(super) fn is_quantity(v: &str) -> bool {
    quantity(v).is_some()
}

/// A Kubernetes quantity's value (`250m` 0.25, `128Mi` 134217728), to compare two of one
/// resource; `None` for anything that is not one.
fn quantity(v: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 14] = [
        ("", 1.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
    ];
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits_end);
    let (_, scale) = SUFFIXES.iter().find(|(s, _)| *s == suffix)?;
    let well_formed =
        num.chars().filter(|c| *c == '.').count() <= 1 && num.chars().any(|c| c.is_ascii_digit());
    well_formed
        .then(|| num.parse::<f64>().ok())
        .flatten()
        .map(|n| n * scale)
}

/// `90s`, `10m`, `2h` in seconds.
pub(crate) fn duration_secs(d: &str) -> Option<u64> {
    let (num, unit) = d.split_at(d.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    })
}
