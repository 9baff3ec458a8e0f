//! Reads a JWKS document from its file or URL.

use std::time::Duration;

use super::KeySource;
use stampede_core::Error;

/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The JWKS document of `source` (an HS256 source has none).
pub async fn fetch(source: &KeySource) -> Result<String, Error> {
    match source {
        KeySource::Hs256(_) => Err(Error::InvalidInput("an HS256 secret is not a JWKS".into())),
        KeySource::JwksFile(path) => tokio::fs::read_to_string(path)
            .await
            .map_err(|e| Error::InvalidInput(format!("--jwt-jwks-file {}: {e}", path.display()))),
        KeySource::JwksUrl(url) => get(url).await,
    }
}

async fn get(url: &str) -> Result<String, Error> {
    let fail =
        |e: &dyn std::fmt::Display| Error::InvalidInput(format!("--jwt-jwks-url {url}: {e}"));
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| fail(&e))?;
    let resp = client.get(url).send().await.map_err(|e| fail(&e))?;
    if !resp.status().is_success() {
        return Err(fail(&format!("answered {}", resp.status())));
    }
    resp.text().await.map_err(|e| fail(&e))
}
