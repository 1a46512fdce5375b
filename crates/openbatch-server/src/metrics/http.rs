//! Request counts and latencies per route template (`/jobs/{job}/tasks/{task}`, never the raw
//! path, so ids do not become labels), method and status class.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::text::{Histogram, Kind, Text};
use crate::server::AppState;

/// Upper bounds of the request latency histogram (seconds).
const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

#[derive(Default)]
struct Route {
    /// Requests by status class: 1xx to 5xx.
    by_class: [u64; 5],
    latency: Option<Histogram>,
}

/// Per (method, route template).
#[derive(Default)]
pub(crate) struct HttpStats {
    routes: Mutex<BTreeMap<(&'static str, String), Route>>,
}

impl HttpStats {
    pub(crate) fn record(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let key = (method, route.to_string());
        let r = routes.entry(key).or_default();
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        r.by_class[class] += 1;
        r.latency
            .get_or_insert_with(|| Histogram::new(LATENCY_BOUNDS))
            .observe(seconds);
    }

    pub(crate) fn write(&self, t: &mut Text) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        t.family(
            "openbatch_http_requests_total",
            Kind::Counter,
            "HTTP requests answered, by method, route template and status class.",
        );
        const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        for ((method, route), r) in routes.iter() {
            for (class, n) in CLASSES.iter().zip(r.by_class) {
                if n > 0 {
                    t.sample(
                        &[("method", method), ("route", route), ("status", class)],
                        n,
                    );
                }
            }
        }
        t.family(
            "openbatch_http_request_duration_seconds",
            Kind::Histogram,
            "Time from a request's arrival to its response's headers, by method and route template.",
        );
        for ((method, route), r) in routes.iter() {
            if let Some(h) = &r.latency {
                t.histogram(&[("method", method), ("route", route)], h);
            }
        }
    }
}

/// The methods that get a label of their own; any other is counted as `other`.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: count and time every request by its route template.
pub(crate) async fn track(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route: Arc<str> = match req.extensions().get::<MatchedPath>() {
        Some(p) => p.as_str().into(),
        None => UNMATCHED.into(),
    };
    let resp = next.run(req).await;
    st.metrics.http.record(
        method,
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_template_and_status_class() {
        let s = HttpStats::default();
        s.record("GET", "/jobs/{job}/tasks/{task}", 200, 0.003);
        s.record("GET", "/jobs/{job}/tasks/{task}", 404, 0.001);
        s.record("GET", "/jobs/{job}/tasks/{task}", 204, 0.002);
        s.record("POST", UNMATCHED, 400, 0.0001);
        let mut t = Text::new();
        s.write(&mut t);
        let text = t.finish();
        let samples = super::super::text::tests::parse(&text).unwrap();
        let requests = |method: &str, route: &str, status: &str| {
            samples
                .iter()
                .find(|(n, l, _)| {
                    n == "openbatch_http_requests_total"
                        && l["method"] == method
                        && l["route"] == route
                        && l["status"] == status
                })
                .map(|s| s.2)
        };
        assert_eq!(
            requests("GET", "/jobs/{job}/tasks/{task}", "2xx"),
            Some(2.0)
        );
        assert_eq!(
            requests("GET", "/jobs/{job}/tasks/{task}", "4xx"),
            Some(1.0)
        );
        assert_eq!(requests("GET", "/jobs/{job}/tasks/{task}", "5xx"), None);
        assert_eq!(requests("POST", "unmatched", "4xx"), Some(1.0));
        assert!(text.contains(
            "openbatch_http_request_duration_seconds_count{method=\"GET\",route=\"/jobs/{job}/tasks/{task}\"} 3\n"
        ));
    }
}
