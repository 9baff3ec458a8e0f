//! Which images a campaign may run. A tenant's `spec.issuer.image` / `spec.writer.image`
//! runs with the campaign's connection credentials, so only images the operator allows:
//! `--allowed-images` patterns (`*` matches any run of characters), or, without any, the
//! repository of the operator's own `--service-image` (any tag or digest).

use crate::Error;
use crate::crd::CouponCampaignSpec;
use crate::validate::Defaults;

/// Refuses a spec whose issuer or writer image the operator does not allow, naming the
/// field and the patterns.
pub(super) fn check_images(spec: &CouponCampaignSpec, defaults: &Defaults) -> Result<(), Error> {
    let images = [
        ("spec.issuer.image", spec.issuer.image.as_deref()),
        ("spec.writer.image", spec.writer.image.as_deref()),
    ];
    for (field, image) in images {
        let Some(image) = image else { continue };
        if !allowed(image, defaults) {
            return Err(Error::InvalidSpec(format!(
                "{field} {image:?} is not allowed: this operator runs only images matching {:?} \
                 (--allowed-images)",
                patterns(defaults)
            )));
        }
    }
    Ok(())
}

/// The patterns in force.
fn patterns(defaults: &Defaults) -> Vec<String> {
    if !defaults.allowed_images.is_empty() {
        return defaults.allowed_images.clone();
    }
    let repo = repository(&defaults.service_image);
    vec![format!("{repo}:*"), format!("{repo}@*")]
}

fn allowed(image: &str, defaults: &Defaults) -> bool {
    image == defaults.service_image || patterns(defaults).iter().any(|p| glob(p, image))
}

/// An image reference without its tag or digest (a registry port's colon stays).
fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::defaults;

    #[test]
    fn globs() {
        assert!(glob(
            "registry.local:5000/stampede/*",
            "registry.local:5000/stampede/service:1"
        ));
        assert!(glob("a*b*c", "aXXbYYc") && glob("a*", "a") && glob("*", ""));
        assert!(!glob("a*b", "ab-x") && !glob("abc", "abcd") && !glob("a*bc", "abc-bc-x"));
        assert!(glob("a*bc", "abcbc"));
    }

    #[test]
    fn by_default_only_the_service_images_repository() {
        let d = defaults();
        assert_eq!(
            repository("registry.local:5000/s/service:1"),
            "registry.local:5000/s/service"
        );
        assert_eq!(repository("s/service@sha256:ab"), "s/service");
        assert!(allowed("stampede/service:other-tag", &d));
        assert!(allowed("stampede/service@sha256:0123", &d));
        assert!(!allowed("evil/miner:latest", &d));
        assert!(!allowed("stampede/service-evil:1", &d));
    }

    #[test]
    fn listed_patterns_replace_the_default() {
        let mut d = defaults();
        d.allowed_images = vec!["registry.corp/stampede/*".into()];
        assert!(allowed("registry.corp/stampede/service:2", &d));
        assert!(!allowed("stampede/service:other-tag", &d), "only the list");
        assert!(
            allowed(&d.service_image.clone(), &d),
            "the operator's own image always"
        );
    }
}
