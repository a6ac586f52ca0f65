//! The shared state, the router and the serve loop.
//!
//! # Invariants
//! - The index is synced with the store once at start-up; handlers that change the store
//!   (copy, delete) update the index themselves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use hyperllama_models::pull::Puller;
use hyperllama_models::registry::Registry;
use hyperllama_models::store::Store;

use crate::api::{blobs, create, embed, models, ollama, openai, pull};
use crate::config::ServerConfig;
use crate::error::Error;
use crate::guard::{self, GuardConfig};
use crate::metrics;
use crate::residency::Residency;

/// Everything handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<StateInner>,
}

#[derive(Debug)]
struct StateInner {
    cfg: ServerConfig,
    store: Store,
    registry: Registry,
    residency: Residency,
    puller: Puller,
}

impl AppState {
    /// Opens the store and its index (creating both if needed) and syncs the index. Must run
    /// inside a tokio runtime (it starts the residency's expiry task).
    pub async fn open(cfg: ServerConfig) -> Result<Self, Error> {
        let store = Store::open(&cfg.models_dir).map_err(Error::Store)?;
        if let Some(parent) = cfg
            .registry_db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(Error::Serve)?;
        }
        let registry = Registry::open(&cfg.registry_db)
            .await
            .map_err(Error::Registry)?;
        let report = registry.sync(&store).await.map_err(Error::Registry)?;
        for (name, why) in &report.broken {
            tracing::warn!("skipping model '{}': {why}", name.display_shortest());
        }
        let residency = Residency::new(cfg.clone(), store.clone());
        let puller = Puller::new(store.clone(), cfg.pull.clone()).map_err(Error::Pull)?;
        Ok(Self {
            inner: Arc::new(StateInner {
                cfg,
                store,
                registry,
                residency,
                puller,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.cfg
    }

    /// The model store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The model index.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The resident models.
    pub fn residency(&self) -> &Residency {
        &self.inner.residency
    }

    /// The registry client.
    pub fn puller(&self) -> &Puller {
        &self.inner.puller
    }
}

/// The whole HTTP app, without the `Host` check (which needs the listening address: see
/// [`serve`]).
pub fn router(state: AppState) -> Router {
    app(state, None)
}

/// The app for a server listening on `local_addr`. Middleware, outermost first: metrics and
/// request log, origin and host checks, CORS, API key, body limit.
fn app(state: AppState, local_addr: Option<SocketAddr>) -> Router {
    let limit = state.config().max_body_bytes;
    let cors = crate::cors::layer(state.config().allowed_origins.clone());
    let guard = Arc::new(GuardConfig::new(state.config(), local_addr));
    let metrics = Arc::clone(state.residency().metrics());
    Router::new()
        .route("/", get(ollama::root).head(ollama::root))
        .route("/api/version", get(ollama::version).head(ollama::version))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/embed", post(embed::embed))
        .route("/api/embeddings", post(embed::embeddings))
        .route("/api/tags", get(models::tags).head(models::tags))
        .route("/api/show", post(models::show))
        .route("/api/ps", get(models::ps))
        .route("/api/copy", post(models::copy))
        .route("/api/delete", axum::routing::delete(models::delete))
        .route("/api/blobs/{digest}", post(blobs::post).head(blobs::head))
        .route("/api/create", post(create::create))
        .route("/api/pull", post(pull::pull))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(embed::openai_embeddings))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/models/{*model}", get(openai::get_model))
        .route("/metrics", get(metrics::metrics))
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state(Arc::clone(&guard), guard::api_key))
        .layer(cors)
        .layer(from_fn_with_state(guard, guard::origin_and_host))
        .layer(from_fn_with_state(metrics, metrics::track))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes; then stops accepting, lets
/// in-flight requests finish, unloads every model, and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let residency = state.residency().clone();
    let local_addr = listener.local_addr().ok();
    let served = axum::serve(listener, app(state, local_addr))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve);
    residency.shutdown().await;
    served
}
