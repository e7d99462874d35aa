//! Security headers on every answer, and CORS only for configured origins.
//!
//! Every response carries `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store` (webhook answers and admin data
//! must not be cached). Browsers get no CORS access unless origins are configured, and the
//! wildcard `*` is refused by [`parse_origins`]: webhook and admin endpoints take credentials.

use axum::Router;
use http::header::{CACHE_CONTROL, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use http::{HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

/// Adds the security headers (keeping any a handler set itself).
pub fn with_security_headers(router: Router) -> Router {
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// Answers CORS requests from `origins` only; with none, no CORS headers at all.
pub fn with_cors(router: Router, origins: Vec<HeaderValue>) -> Router {
    if origins.is_empty() {
        return router;
    }
    router.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([http::header::AUTHORIZATION, http::header::CONTENT_TYPE]),
    )
}

/// Reads configured origins (`https://app.example.com`); refuses `*` and anything that is not
/// a bare scheme://host[:port] origin.
pub fn parse_origins<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<HeaderValue>, String> {
    values
        .into_iter()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|origin| {
            if origin == "*" {
                return Err("a wildcard CORS origin is refused: list each origin, e.g. https://app.example.com".to_string());
            }
            let url = url::Url::parse(origin)
                .map_err(|_| format!("CORS origin `{origin}` is not a URL like https://app.example.com"))?;
            let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
                return Err(format!(
                    "CORS origin `{origin}` must be scheme://host[:port], e.g. https://app.example.com"
                ));
            }
            HeaderValue::from_str(origin.trim_end_matches('/'))
                .map_err(|_| format!("CORS origin `{origin}` is not a valid header value"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        assert_eq!(
            parse_origins(["https://app.example.com", " http://localhost:5173 "]).unwrap(),
            ["https://app.example.com", "http://localhost:5173"]
        );
        assert!(parse_origins(["*"]).unwrap_err().contains("wildcard"));
        assert!(parse_origins(["app.example.com"]).is_err());
        assert!(parse_origins(["https://app.example.com/path"]).is_err());
    }
}
