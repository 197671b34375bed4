//! [`AuthzLayer`] and the service it makes: the tower plumbing around the request
//! pipeline, and the state the layer owns (its session bindings and body limit).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::metadata::origin_of;
use super::*;
use crate::guard::{CallerId, Guard, lru_map};
use crate::server::Authorized;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::SessionManager;

/// Authenticates and authorizes every request before the inner MCP service sees it.
///
/// See the [module documentation](crate::http) for what it checks and an example.
///
/// It builds only in front of rmcp's service of [`Authorized`] handlers. In front of a
/// `Router`, where it could not know that the handlers behind it are gated, it does not
/// compile:
///
/// ```compile_fail
/// # fn f(authz: rmcp_authz::Authz) {
/// let app: axum::Router = axum::Router::new().layer(authz.http_layer());
/// # }
/// ```
///
/// nor in front of a service whose handlers are not wrapped:
///
/// ```compile_fail
/// # use std::sync::Arc;
/// # use rmcp::transport::streamable_http_server::{StreamableHttpService, session::local::LocalSessionManager};
/// # #[derive(Clone)] struct Notes;
/// # impl rmcp::ServerHandler for Notes {}
/// # fn f(authz: rmcp_authz::Authz) {
/// let mcp = StreamableHttpService::new(|| Ok(Notes), Arc::new(LocalSessionManager::default()), Default::default());
/// let protected = authz.protect(mcp);
/// # }
/// ```
///
/// while the same with the wrapper does:
///
/// ```
/// # use std::sync::Arc;
/// # use rmcp::transport::streamable_http_server::{StreamableHttpService, session::local::LocalSessionManager};
/// # #[derive(Clone)] struct Notes;
/// # impl rmcp::ServerHandler for Notes {}
/// # fn f(authz: rmcp_authz::Authz) -> Result<(), rmcp_authz::ConfigError> {
/// authz.wrap(Notes)?;
/// let factory = { let authz = authz.clone(); move || authz.wrap(Notes).map_err(std::io::Error::other) };
/// let mcp = StreamableHttpService::new(factory, Arc::new(LocalSessionManager::default()), Default::default());
/// let protected = authz.protect(mcp);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct AuthzLayer {
    state: Arc<HttpState>,
}

impl fmt::Debug for AuthzLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthzLayer")
            .field("authz", &self.state.guard)
            .finish_non_exhaustive()
    }
}

impl AuthzLayer {
    /// A layer deciding with `guard`, with its own session bindings.
    pub(crate) fn new(guard: Guard, settings: &HttpSettings) -> AuthzLayer {
        AuthzLayer {
            state: Arc::new(HttpState {
                metadata_url: metadata_url_for(guard.resource()),
                origin: origin_of(guard.resource()),
                guard,
                max_body_bytes: settings.max_body_bytes,
                sessions: lru_map(MAX_SESSIONS),
                #[cfg(feature = "dpop")]
                dpop: settings.dpop.clone(),
            }),
        }
    }
}

/// What the layer decides with: the guard, the body limit, the metadata URL challenges
/// name (computed once, not per request), and the session bindings: who opened each
/// session, in a concurrent map whose reads take no lock. The layer owns them; every
/// service it makes shares them.
pub(super) struct HttpState {
    pub(super) guard: Guard,
    pub(super) max_body_bytes: usize,
    pub(super) metadata_url: String,
    /// The resource URI's `scheme://authority`: with a request's path, the URL a DPoP
    /// proof's `htu` must name.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub(super) origin: String,
    pub(super) sessions: moka::sync::Cache<String, Arc<CallerId>>,
    #[cfg(feature = "dpop")]
    pub(super) dpop: Option<Arc<DpopSettings>>,
}

impl HttpState {
    /// The schemes this layer accepts, and whether `authorization` used `DPoP`: which
    /// challenges a refusal carries.
    pub(super) fn schemes(&self, used_dpop: bool) -> super::challenge::Schemes<'_> {
        #[cfg(feature = "dpop")]
        if let Some(dpop) = &self.dpop {
            return super::challenge::Schemes {
                bearer_refused: dpop.required,
                dpop_algs: Some(&dpop.algs),
                used_dpop,
            };
        }
        let _ = used_dpop;
        super::challenge::Schemes::default()
    }
}

/// The layer goes only in front of rmcp's service whose handlers are [`Authorized`]: the
/// layer decides what it can answer with an HTTP status, the wrapper gates every method and
/// filters lists. In front of anything else it does not build, so an endpoint without the
/// wrapper, which would fail open, cannot be assembled.
impl<H, M> Layer<StreamableHttpService<Authorized<H>, M>> for AuthzLayer {
    type Service = AuthzService<StreamableHttpService<Authorized<H>, M>>;

    fn layer(&self, inner: StreamableHttpService<Authorized<H>, M>) -> Self::Service {
        AuthzService {
            inner: Arc::new(inner),
            state: Arc::clone(&self.state),
        }
    }
}

/// The service made by [`AuthzLayer`].
///
/// Requests share the inner service: each one runs it through a reference (rmcp's
/// `StreamableHttpService::handle`), so no request copies rmcp's configuration or boxes
/// a second future.
pub struct AuthzService<S> {
    inner: Arc<S>,
    state: Arc<HttpState>,
}

impl<S> Clone for AuthzService<S> {
    fn clone(&self) -> Self {
        AuthzService {
            inner: Arc::clone(&self.inner),
            state: Arc::clone(&self.state),
        }
    }
}

impl<S> fmt::Debug for AuthzService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthzService")
            .field("authz", &self.state.guard)
            .finish_non_exhaustive()
    }
}

impl<S> AuthzService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably: requests in flight (and clones of this service) keep
    /// the service as it was, later requests to this one see the change.
    pub fn get_mut(&mut self) -> &mut S
    where
        S: Clone,
    {
        Arc::make_mut(&mut self.inner)
    }

    /// Unwraps the inner service (a copy of it while requests or clones still share it).
    pub fn into_inner(self) -> S
    where
        S: Clone,
    {
        Arc::unwrap_or_clone(self.inner)
    }
}

/// The future of [`AuthzService`].
///
/// It boxes the pipeline's future, rmcp's own included: an `async fn`'s future has no
/// name a type can hold on stable Rust (1.88), and a hand-written state machine for the
/// pipeline would be far harder to review than one allocation per request is worth.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<H, M, ReqBody> Service<Request<ReqBody>>
    for AuthzService<StreamableHttpService<Authorized<H>, M>>
where
    Authorized<H>: ServerHandler + Send + 'static,
    M: SessionManager,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    /// Always ready, as rmcp's service is.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        let state = Arc::clone(&self.state);
        ResponseFuture {
            inner: Box::pin(
                async move { Ok(super::pipeline::handle(state, &inner, request).await) },
            ),
        }
    }
}
