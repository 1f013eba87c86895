//! The web GUI at `/gui` on the API port: one HTML page, a stylesheet and a plain JavaScript
//! file, embedded in the binary (nothing to build, nothing fetched from elsewhere). The
//! page calls this same REST API, so authentication and `access.static` apply to every
//! piece of data it shows; the assets themselves are public and answered before
//! authentication.
//!
//! To change the GUI, edit `src/api/gui/*` and rebuild higuma: there is no build step.

use crate::http::{Request, Response};

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: &[u8] = include_bytes!("gui/index.html");

const ASSETS: &[Asset] = &[
    Asset { path: "/gui", content_type: "text/html; charset=utf-8", body: INDEX },
    Asset { path: "/gui/", content_type: "text/html; charset=utf-8", body: INDEX },
    Asset { path: "/gui/index.html", content_type: "text/html; charset=utf-8", body: INDEX },
    Asset { path: "/gui/app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("gui/app.js") },
    Asset { path: "/gui/style.css", content_type: "text/css; charset=utf-8", body: include_bytes!("gui/style.css") },
];

/// Same-origin only: the page loads nothing from elsewhere and may call nothing else, so
/// an injected value could neither load a script nor send data away.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The answer for a `/gui` path; `None` for every other path.
pub fn serve(req: &Request) -> Option<Response> {
    if req.path != "/gui" && !req.path.starts_with("/gui/") {
        return None;
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Some(Response::text(405, "the GUI is read-only: use GET\n").with_header("Allow", "GET, HEAD"));
    }
    let Some(asset) = ASSETS.iter().find(|a| a.path == req.path) else {
        return Some(Response::text(404, format!("no GUI asset at {}; the GUI is at /gui\n", req.path)));
    };
    Some(
        Response::new(200, asset.content_type, asset.body)
            .with_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            .with_header("X-Content-Type-Options", "nosniff")
            .with_header("Referrer-Policy", "no-referrer")
            // The assets change with the binary: always revalidate.
            .with_header("Cache-Control", "no-cache"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Option<Response> {
        serve(&Request { method: "GET".into(), path: path.into(), ..Default::default() })
    }

    #[test]
    fn assets_are_served_with_a_same_origin_policy() {
        let page = get("/gui").expect("the index");
        assert_eq!((page.status, page.content_type), (200, "text/html; charset=utf-8"));
        assert!(String::from_utf8_lossy(&page.body).contains("/gui/app.js"));
        let csp = page.headers.iter().find(|(k, _)| *k == "Content-Security-Policy").map(|(_, v)| v.as_str());
        assert_eq!(csp, Some(CONTENT_SECURITY_POLICY));
        assert_eq!(get("/gui/app.js").unwrap().content_type, "text/javascript; charset=utf-8");
        assert_eq!(get("/gui/nope.js").unwrap().status, 404);
        assert!(get("/meshes").is_none());
        assert!(get("/guide").is_none());
        let post = serve(&Request { method: "POST".into(), path: "/gui".into(), ..Default::default() }).unwrap();
        assert_eq!(post.status, 405);
    }

    /// Every asset the page references is served, and nothing is loaded from elsewhere.
    #[test]
    fn the_page_references_only_embedded_assets() {
        let html = String::from_utf8_lossy(INDEX);
        for attr in ["src=\"", "href=\""] {
            for part in html.split(attr).skip(1) {
                let url = part.split('"').next().unwrap_or("");
                if url.starts_with('#') || url.starts_with("data:") {
                    continue;
                }
                assert!(ASSETS.iter().any(|a| a.path == url), "{url} is not an embedded asset");
            }
        }
    }
}
