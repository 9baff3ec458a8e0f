//! `stampede-operator rules`: a campaign file's alert rules as a Prometheus rules file,
//! for Prometheus without the operator's PrometheusRule.

use std::path::PathBuf;

use clap::Args;

use crate::Error;

/// `rules` flags.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// The campaign file (a CouponCampaign in YAML).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

/// The campaign's alert rules as a Prometheus rules file (YAML).
pub fn rules(args: &RulesArgs) -> Result<String, Error> {
    let plan = crate::validate::from_file(&args.file, "")?;
    serde_yaml::to_string(&crate::alerts::rule_groups(&plan))
        .map_err(|e| Error::Config(format!("rules: {e}")))
}
