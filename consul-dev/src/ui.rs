//! A small read-only HTML page at `/ui/`: services, instances and check statuses. Uses the
//! store through the HTTP layer's state.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use http::{StatusCode, header};

use crate::web::{AppState, get, outside_the_api};

/// The UI routes. `/` and `/ui` redirect with 301, as Consul's `Index` handler and Go's
/// `ServeMux` subtree redirect do.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { to_ui() }))
        .route("/ui", get(|| async { to_ui() }))
        .route("/ui/", get(page))
}

/// `301 Moved Permanently` to `/ui/`.
fn to_ui() -> Response {
    outside_the_api((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/ui/")]).into_response())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn page(State(state): State<AppState>) -> Response {
    outside_the_api(render(&state))
}

fn render(state: &AppState) -> Response {
    let store = state.lock();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>consul-dev</title>\
         <style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}\
         .passing{color:green}.warning{color:orange}.critical{color:red}</style></head><body>",
    );
    let _ = write!(
        html,
        "<h1>consul-dev</h1><p>node <b>{}</b>, datacenter <b>{}</b>, index {}</p>",
        esc(&state.config().node_name),
        esc(&state.config().datacenter),
        store.index
    );
    html.push_str(
        "<table><tr><th>Service</th><th>ID</th><th>Node</th><th>Address</th><th>Tags</th>\
         <th>Checks</th></tr>",
    );
    let mut services: Vec<_> = store.services.values().collect();
    services.sort_by(|a, b| (&a.name, &a.node, &a.id).cmp(&(&b.name, &b.node, &b.id)));
    for s in services {
        let mut checks = String::new();
        for c in store.service_checks(&s.node, &s.id) {
            let _ = write!(
                checks,
                "<span class=\"{0}\" title=\"{1}\">{2}: {0}</span><br>",
                c.status.as_str(),
                esc(&c.output),
                esc(&c.check_id)
            );
        }
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.id),
            esc(&s.node),
            esc(&s.address),
            s.port,
            esc(&s.tags.join(", ")),
            checks
        );
    }
    html.push_str("</table></body></html>");
    Html(html).into_response()
}
