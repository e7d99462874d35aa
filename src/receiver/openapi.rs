//! `GET /openapi.json`: the committed OpenAPI 3.1 description of the receiver's HTTP surface
//! (ingest, the streaming API and the admin API), served as it is.
//!
//! A test keeps it honest: every route the admin router (and the receiver's router) declares
//! must be described, with its methods.

use axum::response::IntoResponse;

/// The document, as committed in `src/receiver/openapi.json`.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// Serves [`DOCUMENT`].
pub async fn serve() -> impl IntoResponse {
    ([(http::header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(path, methods)` of every `.route("…", …)` call in a router's source, `prefix` added.
    fn routes(source: &str, prefix: &str) -> Vec<(String, Vec<&'static str>)> {
        let mut out = Vec::new();
        for chunk in source.split(".route(").skip(1) {
            let Some(rest) = chunk.trim_start().strip_prefix('"') else {
                continue;
            };
            let path = &rest[..rest.find('"').expect("a closing quote")];
            // The handlers run up to the next router call.
            let end = [".route(", ".nest(", ".layer(", ".with_state("]
                .iter()
                .filter_map(|m| chunk.find(m))
                .min()
                .unwrap_or(chunk.len());
            let handlers = &chunk[..end];
            let methods = ["get", "post", "put", "patch", "delete"]
                .into_iter()
                .filter(|m| {
                    handlers.contains(&format!(" {m}("))
                        || handlers.contains(&format!(".{m}("))
                        || handlers.contains(&format!("({m}("))
                })
                .collect();
            out.push((format!("{prefix}{path}"), methods));
        }
        out
    }

    #[test]
    fn every_route_of_the_routers_is_described() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut all = routes(include_str!("admin.rs"), "/admin/webhook-connect");
        let receiver = routes(include_str!("mod.rs"), "");
        assert!(
            receiver
                .iter()
                .any(|(p, _)| p == "/admin/channels/{channel}/rotate-token"),
            "the parser sees the receiver's routes"
        );
        all.extend(receiver);
        assert!(all.len() >= 20, "the parser found the routes: {all:?}");
        let mut missing = Vec::new();
        for (path, methods) in &all {
            assert!(!methods.is_empty(), "no method found for {path}");
            for m in methods {
                if doc["paths"][path][m].is_null() {
                    missing.push(format!("{} {path}", m.to_uppercase()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "add these to src/receiver/openapi.json: {missing:?}"
        );
    }
}
