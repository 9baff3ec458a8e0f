//! `stampede-operator loadtest`: one test of a campaign file, run with the local k6
//! against a running service, judged exactly as the operator judges its Jobs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use stampede_core::clock::now_rfc3339;
use stampede_core::ids::CampaignId;
use stampede_core::metrics::RedisMetrics;
use stampede_core::store::{Store, StoreConfig};

use super::{SCRIPTS, SegmentResult, k6_args, run_id, script_env, verdict};
use crate::Error;
use crate::crd::{LoadTestSpec, LoadTestStatus};
use crate::validate::{self, Plan};

/// `loadtest` flags.
#[derive(Debug, Args)]
pub struct LoadTestArgs {
    /// The campaign file (a CouponCampaign in YAML).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// The test to run (a `spec.loadTests[].name`).
    #[arg(long)]
    pub test: String,
    /// Base URL of the running issuance service.
    #[arg(
        long,
        env = "STAMPEDE_LOADTEST_TARGET",
        default_value = "http://127.0.0.1:8080"
    )]
    pub target: String,
    /// Redis the service uses (the shadow campaign is provisioned there).
    #[arg(
        long,
        env = "STAMPEDE_REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// The k6 binary.
    #[arg(long, env = "STAMPEDE_K6", default_value = "k6")]
    pub k6: PathBuf,
    /// Scale every stage of the profile (e.g. 0.1 for a ten times shorter run).
    #[arg(long, env = "STAMPEDE_LOADTEST_TIME_SCALE")]
    pub time_scale: Option<f64>,
}

/// Runs the test and returns its status as the operator would record it.
pub async fn loadtest(args: LoadTestArgs) -> Result<LoadTestStatus, Error> {
    let plan = validate::from_file(&args.file, &args.redis_url)?;
    let test = find_test(&plan, &args.test)?;
    let run = run_id(&plan, test);
    let shadow = plan.campaign.shadow(&test.name);
    let store = Store::connect(
        &StoreConfig {
            url: args.redis_url.clone(),
            connections: 1,
            timeout: Duration::from_secs(2),
        },
        RedisMetrics::detached(),
    )
    .await?;
    provision_shadow(&store, &plan, &shadow).await?;
    let dir = std::env::temp_dir().join(format!("stampede-loadtest-{}-{run}", std::process::id()));
    let started = now_rfc3339();
    let result = run_k6(&args, &plan, test, &shadow, &run, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let result = result?;
    store.forget(&shadow).await?;
    Ok(verdict(
        test,
        &run,
        &[Some(result)],
        Some(started),
        Some(now_rfc3339()),
    ))
}

/// Creates `shadow` afresh as the operator does for a run (its stock, shards and waiting
/// room).
pub async fn provision_shadow(
    store: &Store,
    plan: &Plan,
    shadow: &CampaignId,
) -> Result<(), Error> {
    super::fresh_shadow(store, plan, shadow).await
}

fn find_test<'a>(plan: &'a Plan, name: &str) -> Result<&'a LoadTestSpec, Error> {
    plan.load_tests
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = plan.load_tests.iter().map(|t| t.name.as_str()).collect();
            Error::InvalidSpec(format!(
                "--test {name:?}: the campaign has no such load test (it has: {})",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ))
        })
}

/// The campaign's token issuer and audience for k6 where this process' environment does
/// not name the target's own; the HS256 secret comes only from the environment (k6
/// inherits `STAMPEDE_JWT_HS256_SECRET`), never from the campaign file.
fn token_env(plan: &Plan) -> Vec<(&'static str, String)> {
    if std::env::var_os("STAMPEDE_JWT_HS256_SECRET").is_none() {
        tracing::warn!(
            "STAMPEDE_JWT_HS256_SECRET is not set: k6 sends no tokens (only a target with --auth none answers)"
        );
    }
    [
        ("STAMPEDE_JWT_ISSUER", &plan.auth.issuer),
        ("STAMPEDE_JWT_AUDIENCE", &plan.auth.audience),
    ]
    .into_iter()
    .filter(|(var, _)| std::env::var_os(var).is_none())
    .map(|(var, value)| (var, value.clone()))
    .collect()
}

/// Writes the scripts into `dir` and runs every segment's share in one local k6.
async fn run_k6(
    args: &LoadTestArgs,
    plan: &Plan,
    test: &LoadTestSpec,
    shadow: &CampaignId,
    run: &str,
    dir: &Path,
) -> Result<SegmentResult, Error> {
    let mut local = test.clone();
    local.parallelism = 1;
    std::fs::create_dir_all(dir)?;
    for (name, body) in SCRIPTS {
        std::fs::write(dir.join(name), body)?;
    }
    let summary = dir.join("summary.json");
    let script = dir.join(format!("{}.js", test.profile.as_str()));
    let env = script_env(
        &local,
        shadow,
        run,
        &args.target,
        0,
        &summary.to_string_lossy(),
    );
    let mut k6 = std::process::Command::new(&args.k6);
    k6.args(k6_args(&local, plan, 0, &script.to_string_lossy()))
        .envs(env)
        .envs(args.time_scale.map(|t| ("TIME_SCALE", t.to_string())))
        .envs(token_env(plan))
        .envs(super::k6::waiting_room_env(plan))
        .stdout(Stdio::null());
    // k6 runs for the whole test; wait for it off the async workers.
    let status = tokio::task::spawn_blocking(move || k6.status())
        .await
        .map_err(|e| Error::Config(format!("k6 task: {e}")))?
        .map_err(|e| {
            Error::Config(format!(
                "running {}: {e} (--k6 names the binary)",
                args.k6.display()
            ))
        })?;
    Ok(SegmentResult {
        // A k6 killed by a signal has no exit code; count it as a crash.
        exit_code: status.code().unwrap_or(-1),
        message: std::fs::read_to_string(&summary).unwrap_or_default(),
    })
}
