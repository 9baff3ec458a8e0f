//! Checks and defaults for single spec fields: connections, container resources,
//! quantities and durations.

use crate::Error;
use crate::crd::{Connection, Resources};
use crate::validate::Endpoint;

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
    Ok(r)
}

pub(super) fn is_quantity(v: &str) -> bool {
    const SUFFIXES: [&str; 14] = [
        "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits_end);
    !num.is_empty()
        && num.chars().filter(|c| *c == '.').count() <= 1
        && num.chars().any(|c| c.is_ascii_digit())
        && SUFFIXES.contains(&suffix)
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
