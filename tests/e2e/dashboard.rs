//! The web dashboard at `/ui` (issue 15): its files served without
//! credentials under a strict policy, checked over plain HTTP, and the whole
//! page driven in a real headless Chromium by `tests/js/dashboard.mjs`
//! against a pin fetched from a real Kubo.

use std::path::Path;
use std::time::Instant;

use pincluster_tests::*;
use serde_json::json;

use crate::psa::require_tool;

const MIB: usize = 1024 * 1024;
const BROWSER: &str = "/usr/bin/chromium";

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[test]
fn the_dashboard_files_are_served_without_credentials_under_a_strict_policy() {
    let daemon = Daemon::start(test_config(json!({})));
    let http = client();
    for path in ["/ui", "/ui/"] {
        let page = http.get(format!("{}{path}", daemon.pinsvc)).send().unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        let policy = header(&page, "content-security-policy");
        for part in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(policy.contains(part), "{path}: the policy lacks {part}: {policy}");
        }
        assert_eq!(header(&page, "x-content-type-options"), "nosniff");
        assert_eq!(header(&page, "x-frame-options"), "DENY");
        assert_eq!(header(&page, "referrer-policy"), "no-referrer");
        assert_eq!(header(&page, "cache-control"), "no-cache");
        let etag = header(&page, "etag").to_string();
        assert!(etag.starts_with('"'), "a strong ETag: {etag:?}");
        assert!(page.text().unwrap().contains("/ui/app.js"));

        let again = http.get(format!("{}{path}", daemon.pinsvc)).header("if-none-match", &etag).send().unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }

    let script = http.get(format!("{}/ui/app.js", daemon.pinsvc)).send().unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(header(&script, "content-type").starts_with("text/javascript"), "{}", header(&script, "content-type"));
    let head = http.head(format!("{}/ui/style.css", daemon.pinsvc)).send().unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(header(&head, "content-type").starts_with("text/css"));

    let missing = http.get(format!("{}/ui/nope.js", daemon.pinsvc)).send().unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&missing, "x-content-type-options"), "nosniff");
    // The dashboard's data routes are authenticated like the rest of the API.
    let session = http.get(format!("{}/ui/api/session", daemon.pinsvc)).send().unwrap();
    assert_eq!(session.status(), StatusCode::UNAUTHORIZED);
    // Only GET and HEAD pass without credentials.
    let post = http.post(format!("{}/ui", daemon.pinsvc)).send().unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn the_dashboard_pins_from_kubo_and_removes_in_a_real_browser() {
    require_tool(Path::new(BROWSER), "chromium (Debian package)");
    let files = tempfile::tempdir().unwrap();
    let mut kubo = Kubo::start();
    random_file(&files.path().join("page.bin"), MIB, 15);
    let cid = kubo.add(&files.path().join("page.bin"));
    // Sampled every second, so the admin panel shows the pin soon after it is pinned.
    let daemon = Daemon::start(test_config(json!({ "observations": { "reporting_interval": "1s" } })));
    // Kept out of git (.gitignore) and left in place to look at.
    let screenshots = repo_root().join("tests/ui-screenshots");
    let (user, password) = USERS[0];
    let started = Instant::now();
    run_js_client(
        "dashboard.mjs",
        // alice has the same password on the REST API: an admin, who sees the cluster panel.
        &[&daemon.pinsvc, user, password, &cid, &kubo.addrs[0], &screenshots.to_string_lossy(), "yes"],
    );
    println!("dashboard.mjs passed in {:?}; screenshots in {}", started.elapsed(), screenshots.display());
}
