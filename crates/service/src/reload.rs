//! Hot reload of credentials, so tokens can be revoked without a restart:
//! on SIGHUP and whenever service.json changes on disk, the file is loaded
//! again and each API's credentials are replaced. A bad edit keeps the old
//! credentials and says why.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use pincluster_auth::Authenticator;
use pincluster_config::{Overrides, ServiceConfig, CONFIG_FILE};
use tokio::task::JoinHandle;

/// How often service.json is checked for changes.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// One API whose credentials follow the file.
pub struct Reloadable {
    pub api: &'static str,
    pub auth: Authenticator,
}

/// What identifies a version of the file without reading it.
fn fingerprint(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

pub fn spawn(dir: PathBuf, overrides: Overrides, apis: Vec<Reloadable>) -> JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let path = dir.join(CONFIG_FILE);
        let mut seen = fingerprint(&path);
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        loop {
            let by_signal = tokio::select! {
                _ = ticker.tick() => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => true,
            };
            let now = fingerprint(&path);
            if !by_signal && now == seen {
                continue;
            }
            seen = now;
            match pincluster_config::load(&dir, std::env::vars(), &overrides) {
                Ok(config) => apply(&config, &apis),
                Err(error) => {
                    tracing::warn!(%error, "service.json changed but cannot be loaded; keeping the old credentials")
                }
            }
        }
    })
}

fn apply(config: &ServiceConfig, apis: &[Reloadable]) {
    for api in apis {
        let section = match api.api {
            "restapi" => config.api.restapi.as_ref(),
            _ => config.api.pinsvcapi.as_ref(),
        };
        let Some(section) = section else {
            tracing::warn!(api = api.api, "section removed from service.json; restart to stop the API");
            continue;
        };
        api.auth.replace_credentials(section.basic_auth_credentials.clone());
        tracing::info!(api = api.api, "credentials reloaded");
    }
}
