//! `spec.waitingRoom` → the room's settings in Redis and where its token key is.

use stampede_core::waiting_room::{WaitingRoomConfig, parse_ttl};

use super::plan::{AuthKeys, AuthPlan};
use crate::Error;
use crate::crd::CouponCampaignSpec;

/// A campaign's waiting room, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingRoomPlan {
    /// The settings the issue and queue scripts read.
    pub config: WaitingRoomConfig,
    /// The Secret and key the issuers sign queue and admission tokens with.
    pub key: (String, String),
}

/// The room of `spec`, `None` without one. Errors name the field.
pub(super) fn waiting_room(
    spec: &CouponCampaignSpec,
    auth: &AuthPlan,
) -> Result<Option<WaitingRoomPlan>, Error> {
    let Some(w) = &spec.waiting_room else {
        return Ok(None);
    };
    let invalid = |m: String| Err(Error::InvalidSpec(format!("spec.waitingRoom.{m}")));
    if !w.enabled && spec.shards != 1 {
        return Ok(None); // a sharded campaign never had a room to turn off
    }
    if spec.shards != 1 {
        return invalid(format!(
            "enabled needs spec.shards 1 (got {}): the line and the stock share one Redis slot",
            spec.shards
        ));
    }
    let ttl = |field: &str, raw: &str| {
        parse_ttl(raw).map_err(|e| Error::InvalidSpec(format!("spec.waitingRoom.{field}: {e}")))
    };
    let config = WaitingRoomConfig {
        enabled: w.enabled,
        max_active: u32::try_from(w.max_active).unwrap_or(0),
        admit_per_second: u32::try_from(w.admit_per_second).unwrap_or(0),
        session_ttl: ttl("sessionTtl", &w.session_ttl)?,
        queue_ttl: ttl("queueTtl", &w.queue_ttl)?,
        shuffle_at_open: w.shuffle_at_open,
    };
    if let Err(e) = config.validate() {
        return invalid(e.to_string());
    }
    let key = match (&w.key_secret_ref, &auth.keys) {
        (Some(r), _) if r.name.is_empty() || r.key.is_empty() => {
            return invalid("keySecretRef needs a name and a key".into());
        }
        (Some(r), _) => (r.name.clone(), r.key.clone()),
        (None, AuthKeys::Hs256 { name, key }) => (name.clone(), key.clone()),
        (None, AuthKeys::JwksUrl(_)) => {
            return invalid(
                "keySecretRef is needed with spec.auth.jwksUrl (no HS256 secret to sign with)"
                    .into(),
            );
        }
    };
    Ok(Some(WaitingRoomPlan { config, key }))
}

#[cfg(test)]
mod tests {
    use crate::crd::CouponCampaign;
    use crate::validate::tests::defaults;
    use crate::validate::validate;

    fn plan_of(spec: &str) -> Result<crate::validate::Plan, crate::Error> {
        let yaml = format!("metadata: {{name: spring, namespace: shop}}\nspec:\n{spec}");
        let cc: CouponCampaign = serde_yaml::from_str(&yaml).unwrap();
        validate(&cc, &defaults())
    }

    #[test]
    fn a_room_takes_its_defaults_and_the_auth_secret_as_its_key() {
        let plan = plan_of("  stock: 10\n  waitingRoom: {maxActive: 50}\n").unwrap();
        let room = plan.waiting_room.unwrap();
        assert_eq!(room.config.max_active, 50);
        assert_eq!(room.config.admit_per_second, 100);
        assert_eq!(room.config.session_ttl.as_secs(), 120);
        assert_eq!(room.config.queue_ttl.as_secs(), 60);
        assert!(room.config.enabled && room.config.shuffle_at_open);
        assert_eq!(room.key, ("stampede-auth".into(), "hs256-secret".into()));
        assert!(plan_of("  stock: 10\n").unwrap().waiting_room.is_none());
    }

    #[test]
    fn a_room_out_of_bounds_is_refused_naming_the_field() {
        let err = |spec: &str| plan_of(spec).unwrap_err().to_string();
        let e = err("  stock: 10\n  shards: 2\n  waitingRoom: {}\n");
        assert!(
            e.contains("spec.waitingRoom.enabled") && e.contains("shards"),
            "{e}"
        );
        let e = err("  stock: 10\n  waitingRoom: {sessionTtl: 2s}\n");
        assert!(e.contains("sessionTtl"), "{e}");
        let e = err("  stock: 10\n  waitingRoom: {maxActive: 0}\n");
        assert!(e.contains("maxActive"), "{e}");
        let e = err("  stock: 10\n  auth: {jwksUrl: 'http://keys/jwks'}\n  waitingRoom: {}\n");
        assert!(e.contains("keySecretRef"), "{e}");
        let ok = plan_of("  stock: 10\n  shards: 2\n  waitingRoom: {enabled: false}\n");
        assert!(
            ok.is_ok(),
            "a room turned off may stay on a sharded campaign"
        );
    }
}
