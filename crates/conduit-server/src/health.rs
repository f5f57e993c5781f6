//! Health checks for orchestrators and load balancers: *liveness* (the event loop answers) and *readiness*
//! (the server takes new work: it accepts connections, is not shutting down, and its hub's backbone is up).
//!
//! Both are answered by the event loop itself, ahead of the router, so a loop that is stuck (a handler that
//! blocks, say) fails its liveness check by not answering it. [`BackboneHealth`] is the hook through which a
//! hub backbone (a store such as Redis that orders and keeps events) reports whether it is reachable; it feeds
//! readiness and the `conduit_backbone_up` metric.

use crate::response::Response;
use conduit_http::{Method, Request, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Where the server answers its health checks. Both are off by default (`None`), so they never shadow an
/// application's routes; [`HealthConfig::standard`] turns both on at the customary paths.
///
/// - `GET liveness_path`: `200 ok` whenever the event loop that holds the connection runs.
/// - `GET readiness_path`: `200 ready`, or `503` naming what is missing: `not accepting` (the listener is
///   closed or pausing after running out of file descriptors), `shutting down`, `backbone down`.
///
/// `HEAD` is answered like `GET` without the body; other methods get `405`. Both answers carry
/// `Cache-Control: no-store`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthConfig {
    /// The liveness check's path, e.g. `/healthz`; `None` leaves it off.
    pub liveness_path: Option<String>,
    /// The readiness check's path, e.g. `/readyz`; `None` leaves it off.
    pub readiness_path: Option<String>,
}

impl HealthConfig {
    /// Liveness at `/healthz` and readiness at `/readyz`.
    pub fn standard() -> Self {
        HealthConfig { liveness_path: Some("/healthz".into()), readiness_path: Some("/readyz".into()) }
    }
}

/// The state's values; 0, the default, means no report yet.
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Whether the hub's backbone can take and deliver events, as the backbone last reported it. Cheap to clone;
/// clones share the state.
///
/// A backbone calls [`set_up`](Self::set_up) when it connects and `set_up(false)` when it loses its store;
/// readiness then fails with `backbone down` and `conduit_backbone_up` reads 0. A hub without a backbone
/// never reports, and neither readiness nor the metrics mention one.
///
/// ```
/// use conduit_server::{Hub, HubConfig};
///
/// let hub = Hub::new(HubConfig::default());
/// let health = hub.backbone_health().clone(); // handed to the backbone
/// assert_eq!(health.is_up(), None);
/// health.set_up(false);
/// assert_eq!(hub.backbone_health().is_up(), Some(false));
/// ```
#[derive(Clone, Debug, Default)]
pub struct BackboneHealth {
    state: Arc<AtomicU8>,
}

impl BackboneHealth {
    /// A backbone that has not reported yet.
    pub fn new() -> Self {
        BackboneHealth::default()
    }

    /// Records whether the backbone is up.
    pub fn set_up(&self, up: bool) {
        self.state.store(if up { UP } else { DOWN }, Ordering::Relaxed);
    }

    /// `Some(up)` once a backbone has reported, `None` before (or without a backbone).
    pub fn is_up(&self) -> Option<bool> {
        match self.state.load(Ordering::Relaxed) {
            UP => Some(true),
            DOWN => Some(false),
            _ => None,
        }
    }
}

/// What readiness depends on, as one event loop sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Readiness {
    pub(crate) accepting: bool,
    pub(crate) shutting_down: bool,
    pub(crate) backbone_up: Option<bool>,
}

impl Readiness {
    /// What keeps the server from being ready; empty when it is ready.
    pub(crate) fn missing(self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.shutting_down {
            missing.push("shutting down");
        } else if !self.accepting {
            missing.push("not accepting");
        }
        if self.backbone_up == Some(false) {
            missing.push("backbone down");
        }
        missing
    }
}

/// Which check a request asks for, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Liveness,
    Readiness,
}

/// The check `path` names under `config`.
pub(crate) fn check_for(config: &HealthConfig, path: &str) -> Option<Check> {
    if config.liveness_path.as_deref() == Some(path) {
        Some(Check::Liveness)
    } else if config.readiness_path.as_deref() == Some(path) {
        Some(Check::Readiness)
    } else {
        None
    }
}

/// The answer to a health check, the server being in `readiness`.
pub(crate) fn answer(check: Check, req: &Request, readiness: Readiness) -> Response {
    if !matches!(req.method(), Method::Get | Method::Head) {
        return Response::error(StatusCode::METHOD_NOT_ALLOWED, format_args!("{} is not allowed here", req.method()))
            .header("Allow", "GET, HEAD");
    }
    let response = match check {
        Check::Liveness => Response::text("ok\n"),
        Check::Readiness => {
            let missing = readiness.missing();
            if missing.is_empty() {
                Response::text("ready\n")
            } else {
                Response::error(StatusCode::SERVICE_UNAVAILABLE, format_args!("not ready: {}", missing.join(", ")))
            }
        }
    };
    response.header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_what_is_missing() {
        let ready = Readiness { accepting: true, shutting_down: false, backbone_up: None };
        let cases: &[(Readiness, &[&str])] = &[
            (ready, &[]),
            (Readiness { backbone_up: Some(true), ..ready }, &[]),
            (Readiness { backbone_up: Some(false), ..ready }, &["backbone down"]),
            (Readiness { accepting: false, ..ready }, &["not accepting"]),
            // A loop shutting down has stopped accepting too; the cause is the one worth naming.
            (
                Readiness { accepting: false, shutting_down: true, backbone_up: Some(false) },
                &["shutting down", "backbone down"],
            ),
        ];
        for (state, want) in cases {
            assert_eq!(state.missing(), *want, "{state:?}");
        }
    }

    #[test]
    fn checks_answer_at_their_paths_only_to_get_and_head() {
        let config = HealthConfig::standard();
        assert_eq!(check_for(&config, "/healthz"), Some(Check::Liveness));
        assert_eq!(check_for(&config, "/readyz"), Some(Check::Readiness));
        assert_eq!(check_for(&config, "/other"), None);
        assert_eq!(check_for(&HealthConfig::default(), "/healthz"), None, "off by default");
        let ready = Readiness { accepting: true, shutting_down: false, backbone_up: None };
        let down = Readiness { backbone_up: Some(false), ..ready };
        let req = |method| Request::new(method, "/readyz").unwrap();
        let cases = [
            (Check::Liveness, Method::Get, down, 200, "ok\n"),
            (Check::Readiness, Method::Get, ready, 200, "ready\n"),
            (Check::Readiness, Method::Head, ready, 200, "ready\n"),
            (Check::Readiness, Method::Get, down, 503, "not ready: backbone down\n"),
            (Check::Readiness, Method::Post, ready, 405, "POST is not allowed here\n"),
        ];
        for (check, method, state, status, body) in cases {
            let r = answer(check, &req(method.clone()), state);
            assert_eq!((r.status_code().as_u16(), r.body()), (status, body.as_bytes()), "{check:?} {method}");
        }
    }

    #[test]
    fn backbone_health_is_shared_by_its_clones() {
        let health = BackboneHealth::new();
        let reporter = health.clone();
        assert_eq!(health.is_up(), None);
        reporter.set_up(true);
        assert_eq!(health.is_up(), Some(true));
        reporter.set_up(false);
        assert_eq!(health.is_up(), Some(false));
    }
}
