//! The dashboard's static files, built into the binary: one table
//! ([`ASSETS`]) of name, content type and bytes, served at `/ui` (the page)
//! and `/ui/{file}`, with a strict Content-Security-Policy on every answer
//! and a strong ETag so browsers revalidate instead of downloading again.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use pincluster_httpcommon::if_none_match;

/// One file of the front-end.
struct Asset {
    /// The name under `/ui/`.
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml; charset=utf-8";

/// The page `/ui` answers with.
const INDEX: &str = "index.html";

/// Every file the front-end has. Its JS modules import each other by
/// relative name, so they all sit at one level under `/ui/`.
static ASSETS: [Asset; 9] = [
    Asset { name: INDEX, content_type: HTML, bytes: include_bytes!("../assets/index.html") },
    Asset { name: "style.css", content_type: CSS, bytes: include_bytes!("../assets/style.css") },
    Asset { name: "favicon.svg", content_type: SVG, bytes: include_bytes!("../assets/favicon.svg") },
    Asset { name: "app.js", content_type: JS, bytes: include_bytes!("../assets/app.js") },
    Asset { name: "http.js", content_type: JS, bytes: include_bytes!("../assets/http.js") },
    Asset { name: "util.js", content_type: JS, bytes: include_bytes!("../assets/util.js") },
    Asset { name: "pins.js", content_type: JS, bytes: include_bytes!("../assets/pins.js") },
    Asset { name: "admin.js", content_type: JS, bytes: include_bytes!("../assets/admin.js") },
    Asset { name: "chart.js", content_type: JS, bytes: include_bytes!("../assets/chart.js") },
];

/// Only our own files run, load and connect; nothing inline, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
    img-src 'self' data:; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Sent with every answer under `/ui`, files and 404s alike.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    // Kept, but revalidated each time: an upgraded daemon serves its own files at once.
    ("cache-control", "no-cache"),
];

/// Registers `/ui` and `/ui/{file}` for GET and HEAD.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ui").route(web::get().to(index)).route(web::head().to(index)))
        .service(web::resource("/ui/{file}").route(web::get().to(file)).route(web::head().to(file)));
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, INDEX)
}

async fn file(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    serve(&req, &name)
}

fn serve(req: &HttpRequest, name: &str) -> HttpResponse {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return secured(StatusCode::NOT_FOUND).content_type("text/plain; charset=utf-8").body("not found\n");
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    if if_none_match(req, etag) {
        return secured(StatusCode::NOT_MODIFIED).insert_header((header::ETAG, etag.as_str())).finish();
    }
    secured(StatusCode::OK)
        .content_type(asset.content_type)
        .insert_header((header::ETAG, etag.as_str()))
        .body(asset.bytes)
}

fn secured(status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    for header in SECURITY_HEADERS {
        response.insert_header(header);
    }
    response
}

/// The strong ETag of each asset, in table order, computed at first use
/// from its length and content.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let mut hasher = DefaultHasher::new();
                asset.bytes.hash(&mut hasher);
                format!("\"{:x}-{:016x}\"", asset.bytes.len(), hasher.finish())
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use actix_web::{test as web_test, App};

    use super::*;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.bytes).expect("assets are UTF-8")
    }

    fn asset(name: &str) -> &'static Asset {
        ASSETS.iter().find(|a| a.name == name).expect("asset in the table")
    }

    /// The names `text` refers to after each `prefix`, up to `end`.
    fn references<'a>(text: &'a str, prefix: &str, end: char) -> Vec<&'a str> {
        text.match_indices(prefix).filter_map(|(at, _)| text[at + prefix.len()..].split(end).next()).collect()
    }

    #[test]
    fn every_file_has_the_type_of_its_extension_and_a_comment_first() {
        for asset in &ASSETS {
            let extension = asset.name.rsplit('.').next().expect("extension");
            let (wanted, opening) = match extension {
                "html" => (HTML, "<!--"),
                "js" => (JS, "//"),
                "css" => (CSS, "/*"),
                "svg" => (SVG, "<!--"),
                other => panic!("{}: no content type for .{other}", asset.name),
            };
            assert_eq!(asset.content_type, wanted, "{}", asset.name);
            assert!(text(asset).starts_with(opening), "{} opens with a comment saying why it exists", asset.name);
            let same = ASSETS.iter().filter(|a| a.name == asset.name).count();
            assert_eq!(same, 1, "{} is listed once", asset.name);
        }
    }

    #[test]
    fn every_file_the_page_and_modules_load_is_in_the_table() {
        let html = text(asset(INDEX));
        let loaded = references(html, "=\"/ui/", '"');
        assert!(loaded.contains(&"app.js") && loaded.contains(&"style.css"), "{loaded:?}");
        for name in loaded {
            asset(name);
        }
        for module in ASSETS.iter().filter(|a| a.content_type == JS) {
            for name in references(text(module), "from './", '\'') {
                assert!(ASSETS.iter().any(|a| a.name == name), "{} imports missing {name}", module.name);
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_code_or_style_the_policy_would_block() {
        let html = text(asset(INDEX));
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<style"), "inline <style>");
        assert!(!lower.contains(" style="), "inline style attribute");
        assert!(!lower.contains("javascript:"), "javascript: URL");
        for (at, _) in lower.match_indices("<script") {
            let tag = lower[at..].split('>').next().expect("tag");
            assert!(tag.contains(" src="), "inline script: {tag}");
        }
        for word in lower.split(|c: char| c.is_whitespace()) {
            assert!(!(word.starts_with("on") && word.contains("=\"")), "inline event handler: {word}");
        }
    }

    #[actix_web::test]
    async fn the_page_is_served_at_ui_with_the_security_headers() {
        let app = web_test::init_service(App::new().configure(configure)).await;
        for path in ["/ui", "/ui/index.html"] {
            let response = web_test::call_service(&app, web_test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers().clone();
            assert_eq!(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some(HTML));
            for (name, value) in SECURITY_HEADERS {
                assert_eq!(headers.get(name).and_then(|v| v.to_str().ok()), Some(value), "{path}: {name}");
            }
            assert!(headers.contains_key(header::ETAG), "{path}");
            let body = web_test::read_body(response).await;
            assert_eq!(&body[..], asset(INDEX).bytes);
        }
    }

    #[actix_web::test]
    async fn a_known_etag_gets_304_and_an_unknown_file_404() {
        let app = web_test::init_service(App::new().configure(configure)).await;
        let first = web_test::call_service(&app, web_test::TestRequest::get().uri("/ui/app.js").to_request()).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some(JS));
        let etag = first.headers().get(header::ETAG).expect("etag").clone();
        assert!(etag.to_str().expect("ascii").starts_with('"'), "a strong ETag");

        for sent in
            [etag.to_str().expect("ascii").to_string(), format!("\"other\", W/{}", etag.to_str().expect("ascii"))]
        {
            let request = web_test::TestRequest::get().uri("/ui/app.js").insert_header((header::IF_NONE_MATCH, sent));
            let again = web_test::call_service(&app, request.to_request()).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
            assert_eq!(again.headers().get(header::ETAG), Some(&etag));
            assert!(web_test::read_body(again).await.is_empty());
        }
        let other = web_test::TestRequest::get().uri("/ui/app.js").insert_header((header::IF_NONE_MATCH, "\"stale\""));
        assert_eq!(web_test::call_service(&app, other.to_request()).await.status(), StatusCode::OK);

        let missing = web_test::call_service(&app, web_test::TestRequest::get().uri("/ui/nope.js").to_request()).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(missing.headers().contains_key("content-security-policy"));
        let head = web_test::TestRequest::default().method(actix_web::http::Method::HEAD).uri("/ui/style.css");
        let head = web_test::call_service(&app, head.to_request()).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some(CSS));
    }

    #[test]
    fn etags_differ_between_files() {
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len());
        for (i, tag) in tags.iter().enumerate() {
            assert!(!tags[..i].contains(tag), "{tag} repeats");
        }
    }
}
