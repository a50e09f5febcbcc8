//! Method routing with Consul's 405s and OPTIONS answers, and the answers outside the API
//! (unknown paths, the UI); every answer is counted by its route pattern and status. Uses
//! `web` (the router's state), `error` and `metrics`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::{MatchedPath, Request};
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use http::{HeaderValue, Method, StatusCode, header};

use crate::error::text;
use crate::metrics;
use crate::web::AppState;

/// A handler whose answers are counted by the route pattern it was reached through (the
/// router puts it in the request as [`MatchedPath`]) and their status.
#[derive(Debug, Clone)]
pub(crate) struct Counted<H>(pub(crate) H);

impl<H, T, S> Handler<T, S> for Counted<H>
where
    H: Handler<T, S>,
    T: 'static,
    S: Send + 'static,
{
    type Future = CountedFuture<H::Future>;

    fn call(self, req: Request, state: S) -> Self::Future {
        CountedFuture {
            route: req.extensions().get::<MatchedPath>().cloned(),
            answer: self.0.call(req, state),
        }
    }
}

pin_project_lite::pin_project! {
    /// A [`Counted`] handler's answer: counts it once it is ready (no allocation of its own).
    pub(crate) struct CountedFuture<F> {
        #[pin]
        answer: F,
        route: Option<MatchedPath>,
    }
}

impl<F: Future<Output = Response>> Future for CountedFuture<F> {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        let resp = ready!(this.answer.poll(cx));
        let route = this
            .route
            .as_ref()
            .map_or(metrics::UNMATCHED, MatchedPath::as_str);
        metrics::answered(route, resp.status().as_u16());
        Poll::Ready(resp)
    }
}

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
            Method::GET => router.get(Counted(handler.clone())),
            Method::PUT => router.put(Counted(handler.clone())),
            Method::POST => router.post(Counted(handler.clone())),
            Method::DELETE => router.delete(Counted(handler.clone())),
            _ => router,
        };
    }
    let allow_options = allow.clone();
    router
        .options(Counted(move || {
            let allow = allow_options.clone();
            async move {
                let mut resp = StatusCode::OK.into_response();
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
                resp
            }
        }))
        .fallback(Counted(move |method: Method| {
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
        }))
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
    metrics::answered(metrics::UNMATCHED, StatusCode::NOT_FOUND.as_u16());
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
