//! Method routing with Consul's 405s and OPTIONS answers, and the answers outside the API
//! (unknown paths, the UI). Uses `web` (the router's state) and `error`.

use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use http::{HeaderValue, Method, StatusCode, header};

use crate::error::text;
use crate::web::AppState;

/// A route accepting only `methods` (plus OPTIONS), answering others with Consul's 405.
pub(crate) fn only<H, T>(methods: &'static [Method], handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState> + Clone,
    T: 'static,
{
    let allow: String = std::iter::once("OPTIONS")
        .chain(methods.iter().map(Method::as_str))
        .collect::<Vec<_>>()
        .join(",");
    let mut router = MethodRouter::new();
    for m in methods {
        router = match *m {
            Method::GET => router.get(handler.clone()),
            Method::PUT => router.put(handler.clone()),
            Method::POST => router.post(handler.clone()),
            Method::DELETE => router.delete(handler.clone()),
            _ => router,
        };
    }
    let allow_options = allow.clone();
    router
        .options(move || {
            let allow = allow_options.clone();
            async move {
                let mut resp = StatusCode::OK.into_response();
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
                resp
            }
        })
        .fallback(move |method: Method| {
            let allow = allow.clone();
            async move {
                let mut resp = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("method {method} not allowed"),
                );
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
                resp
            }
        })
}

/// PUT-only route.
pub(crate) fn put<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState> + Clone,
    T: 'static,
{
    only(&[Method::PUT], handler)
}

/// GET-only route.
pub(crate) fn get<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState> + Clone,
    T: 'static,
{
    only(&[Method::GET], handler)
}

/// The answer for paths no route matches.
pub(crate) async fn not_found(uri: http::Uri) -> Response {
    let body = if uri.path().contains("/v1/") {
        "Invalid URL path: not a recognized HTTP API endpoint\n"
    } else {
        "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with \
         '/v1/'\n"
    };
    outside_the_api(text(StatusCode::NOT_FOUND, body))
}

/// Marks an answer of Consul's `Index` handler or its UI, which are not wrapped by the
/// API's `wrap` and so carry no `X-Consul-Default-ACL-Policy`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutsideTheApi;

/// `resp`, marked [`OutsideTheApi`].
pub(crate) fn outside_the_api(mut resp: Response) -> Response {
    resp.extensions_mut().insert(OutsideTheApi);
    resp
}
