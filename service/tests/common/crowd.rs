//! A crowd of users in a loop against one campaign, each request a new user, and what
//! they were told: for suites that break something mid-stampede (failovers).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Service, eventually};

/// What a stampede's users were told: user → seq of every coupon acknowledged (201), the
/// number of answers by outcome (`201`, `503 unavailable`, `503 suspended`, …) and the
/// slowest answer with its outcome.
#[derive(Default, Clone)]
pub struct Answers {
    /// User → seq of every coupon acknowledged (201).
    pub acked: HashMap<String, u64>,
    /// Answers by outcome (`201`, `503 unavailable`, …).
    pub outcomes: BTreeMap<String, usize>,
    /// The slowest answer and its outcome.
    pub slowest: (Duration, String),
}

/// The answers, shared with the crowd's tasks.
pub type Shared = Arc<Mutex<Answers>>;

/// One issue request for `user`: its outcome, and the seq of a 201.
pub async fn answer(svc: &Service, campaign: &str, user: &str) -> (String, Option<u64>) {
    let response = match svc.issue_request(campaign, user).send().await {
        Ok(r) => r,
        Err(e) => return (format!("no answer: {e}"), None),
    };
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let error = body["error"].as_str().unwrap_or("?");
    match status {
        201 => ("201".into(), body["seq"].as_u64()),
        200 => ("200".into(), None),
        _ => (format!("{status} {error}"), None),
    }
}

/// `tasks` users in a loop against `campaign` until `stop` (each request a new user).
pub fn stampede(
    svc: &Arc<Service>,
    campaign: &str,
    tasks: usize,
    stop: &CancellationToken,
) -> Shared {
    let answers = Shared::default();
    for t in 0..tasks {
        let (svc, stop, answers) = (svc.clone(), stop.clone(), answers.clone());
        let campaign = campaign.to_owned();
        tokio::spawn(async move {
            for i in 0.. {
                if stop.is_cancelled() {
                    return;
                }
                let user = format!("{campaign}-u-{t}-{i}");
                let start = Instant::now();
                let (outcome, seq) = answer(&svc, &campaign, &user).await;
                let mut a = answers.lock().unwrap();
                a.slowest = a.slowest.clone().max((start.elapsed(), outcome.clone()));
                *a.outcomes.entry(outcome).or_default() += 1;
                if let Some(seq) = seq {
                    a.acked.insert(user, seq);
                }
            }
        });
    }
    answers
}

/// How many answers were `outcome`.
pub fn count(answers: &Shared, outcome: &str) -> usize {
    let a = answers.lock().unwrap();
    a.outcomes.get(outcome).copied().unwrap_or(0)
}

/// Waits up to `limit` until `n` answers were `outcome`.
pub async fn until_count(answers: &Shared, outcome: &str, n: usize, limit: Duration) {
    let reached = || async { (count(answers, outcome) >= n).then_some(()) };
    let waited = tokio::time::timeout(limit, eventually("", limit * 2, reached)).await;
    let so_far = answers.lock().unwrap().outcomes.clone();
    assert!(
        waited.is_ok(),
        "{n} answers {outcome} in {limit:?}? {so_far:?}"
    );
}
