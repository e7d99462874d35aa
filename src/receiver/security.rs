//! Security headers on every answer, HSTS over TLS, and CORS only for configured origins.
//!
//! Every response carries `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store` (webhook answers and admin data
//! must not be cached), and `Strict-Transport-Security` when the listener is TLS. Browsers get
//! no CORS access unless origins are configured, and the wildcard `*` is refused by
//! [`parse_origins`]: webhook and admin endpoints take credentials.

use axum::Router;
use axum::response::Response;
use http::header::{
    CACHE_CONTROL, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use http::{HeaderName, HeaderValue, Method};
use tower::Layer as _;
use tower::util::{MapResponse, MapResponseLayer};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The headers every answer carries, unless its handler set them itself.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (X_FRAME_OPTIONS, "DENY"),
    (REFERRER_POLICY, "no-referrer"),
    (CACHE_CONTROL, "no-store"),
];

/// `Strict-Transport-Security` of a TLS listener: one year, as browsers' preload lists expect.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// A router with [`with_security_headers`] around it: what the listeners serve.
pub type Secured = MapResponse<Router, fn(Response) -> Response>;

/// Wraps the whole router once (not each route, as `Router::layer` would, which costs a boxed
/// service per route and per layer on every request): the security headers on every answer,
/// and HSTS too when `hsts` (the listener is TLS).
pub fn with_security_headers(router: Router, hsts: bool) -> Secured {
    let add: fn(Response) -> Response = if hsts {
        |response| with_hsts(with_headers(response))
    } else {
        with_headers
    };
    MapResponseLayer::new(add).layer(router)
}

fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    response
}

fn with_hsts(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(STRICT_TRANSPORT_SECURITY)
        .or_insert_with(|| HeaderValue::from_static(HSTS));
    response
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

    async fn headers_of(app: Secured, path: &str) -> http::HeaderMap {
        use tower::ServiceExt as _;
        let request = http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        app.oneshot(request).await.unwrap().headers().clone()
    }

    #[tokio::test]
    async fn every_answer_gets_the_headers_a_handler_did_not_set_itself() {
        let router = || {
            Router::new().route(
                "/own",
                axum::routing::get(|| async { ([(CACHE_CONTROL, "no-cache")], "x") }),
            )
        };
        let own = headers_of(with_security_headers(router(), false), "/own").await;
        assert_eq!(
            own[CACHE_CONTROL], "no-cache",
            "the handler's own value stays"
        );
        assert_eq!(own[X_FRAME_OPTIONS], "DENY");
        assert!(
            own.get(STRICT_TRANSPORT_SECURITY).is_none(),
            "HSTS only over TLS"
        );
        let missing = headers_of(with_security_headers(router(), true), "/missing").await;
        assert_eq!(missing[X_CONTENT_TYPE_OPTIONS], "nosniff", "the 404 too");
        assert_eq!(missing[REFERRER_POLICY], "no-referrer");
        assert_eq!(missing[CACHE_CONTROL], "no-store");
        assert_eq!(missing[STRICT_TRANSPORT_SECURITY], HSTS);
    }
}
