//! Which campaigns an issuer serves (`--campaigns`), and how the campaign a URL names maps
//! to its id in Redis, Kafka and PostgreSQL (which carries the Kubernetes namespace, so
//! two teams' `flash` never meet).

use stampede_core::Error;
use stampede_core::ids::CampaignId;

/// One served campaign: the name clients use in URLs and the campaign's id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Served {
    name: CampaignId,
    id: CampaignId,
}

/// The campaigns an issuer serves; every campaign in its Redis when `--campaigns` is not
/// given (local rehearsal: the operator always gives it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignScope(Option<Vec<Served>>);

impl CampaignScope {
    /// Every campaign in Redis, each under its own id.
    pub fn every() -> Self {
        Self(None)
    }

    /// From `--campaigns` entries, each `<name>=<id>` (clients say `name`, the data is kept
    /// under `id`) or `<id>` (both the same). An empty list means every campaign.
    pub fn parse(entries: &[String]) -> Result<Self, Error> {
        if entries.is_empty() {
            return Ok(Self::every());
        }
        let served = entries
            .iter()
            .map(|e| {
                let (name, id) = e.split_once('=').unwrap_or((e, e));
                let parse = |s: &str| {
                    CampaignId::parse(s.trim())
                        .map_err(|err| Error::InvalidInput(format!("--campaigns {e:?}: {err}")))
                };
                Ok(Served {
                    name: parse(name)?,
                    id: parse(id)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self(Some(served)))
    }

    /// Whether `--campaigns` was left out (every campaign is served).
    pub fn is_every(&self) -> bool {
        self.0.is_none()
    }

    /// The ids of the campaigns served (`None`: every campaign in Redis).
    pub fn ids(&self) -> Option<Vec<CampaignId>> {
        self.0
            .as_ref()
            .map(|served| served.iter().map(|s| s.id.clone()).collect())
    }

    /// The id behind `name` from a URL: a served campaign or one of its load tests' shadow
    /// campaigns. `None` when this issuer does not serve it (answered like a campaign that
    /// does not exist: no oracle for other tenants' campaigns).
    pub fn resolve(&self, name: &CampaignId) -> Option<CampaignId> {
        let Some(served) = &self.0 else {
            return Some(name.clone());
        };
        if let Some(s) = served.iter().find(|s| &s.name == name) {
            return Some(s.id.clone());
        }
        let test = name.shadow_test()?;
        served
            .iter()
            .find(|s| &s.name.shadow(test) == name)
            .map(|s| s.id.shadow(test))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CampaignId {
        CampaignId::parse(s).unwrap()
    }

    #[test]
    fn a_scoped_issuer_maps_its_campaign_and_its_shadows_and_nothing_else() {
        let scope = CampaignScope::parse(&["flash=team-a.flash".into()]).unwrap();
        assert_eq!(scope.resolve(&id("flash")), Some(id("team-a.flash")));
        assert_eq!(
            scope.resolve(&id("flash.lt-smoke")),
            Some(id("team-a.flash.lt-smoke"))
        );
        for other in ["team-a.flash", "team-b.flash", "flashy", "other.lt-smoke"] {
            assert_eq!(scope.resolve(&id(other)), None, "{other}");
        }
    }

    #[test]
    fn a_long_name_finds_its_shortened_shadow() {
        let name = "n".repeat(120);
        let entry = format!("{name}=t.{name}");
        let scope = CampaignScope::parse(&[entry]).unwrap();
        let shadow = id(&name).shadow("preflight");
        let got = scope.resolve(&shadow).unwrap();
        assert_eq!(got, id(&format!("t.{name}")).shadow("preflight"));
    }

    #[test]
    fn without_campaigns_every_id_is_its_own_and_bad_entries_are_named() {
        let every = CampaignScope::parse(&[]).unwrap();
        assert!(every.is_every());
        assert_eq!(every.resolve(&id("x.y")), Some(id("x.y")));
        let bare = CampaignScope::parse(&["solo".into()]).unwrap();
        assert_eq!(bare.resolve(&id("solo")), Some(id("solo")));
        let err = CampaignScope::parse(&["ok=Bad".into()]).unwrap_err();
        assert!(err.to_string().contains("--campaigns \"ok=Bad\""), "{err}");
    }
}
