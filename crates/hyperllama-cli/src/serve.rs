//! `hyperllama serve`: the HTTP server on `HYPERLLAMA_HOST`, until Ctrl-C or SIGTERM.

use anyhow::Context;
use hyperllama_server::guard::ApiKey;
use hyperllama_server::options::KeepAlive;
use hyperllama_server::{serve as run_server, AppState, ServerConfig};

use crate::env;

/// Runs the server until it is told to stop; in-flight requests finish first.
pub fn serve() -> anyhow::Result<()> {
    let settings = env::serve_env()?;
    let models = env::models_dir()?;
    let mut cfg = ServerConfig::new(&models, env::index_db(&models)?);
    if let Some(k) = &settings.keep_alive {
        cfg.default_keep_alive = KeepAlive::parse_str(k)
            .map_err(|e| anyhow::anyhow!("HYPERLLAMA_KEEP_ALIVE: {}", e.message))?
            .as_duration();
    }
    if let Some(n) = settings.max_loaded_models {
        cfg.max_loaded_models = n;
    }
    if let Some(n) = settings.max_queue {
        cfg.queue_limit = n;
    }
    if let Some(n) = settings.context_length {
        cfg.default_num_ctx = n;
    }
    if let Some(n) = settings.num_parallel {
        cfg.num_parallel = n;
    }
    cfg.n_threads = env::num_threads()?;
    for (host, url) in env::registry_urls()? {
        cfg.pull.registries.insert(host.to_owned(), url);
    }
    cfg.allowed_origins = settings.origins;
    cfg.api_key = settings.api_key.map(ApiKey::new);
    cfg.max_memory = settings.max_memory;
    if let Some(on) = settings.speculative {
        cfg.speculative = on;
    }
    cfg.cache_tokens = settings.cache_tokens;
    cfg.kv_streams = settings.kv_streams;
    cfg.gather = settings.gather;
    cfg.num_batch = settings.num_batch;
    cfg.settings = Some(std::sync::Arc::new(env::settings()?.clone()));
    cfg.machine = crate::config::machine();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let state = AppState::open(cfg).await?;
        let listener = tokio::net::TcpListener::bind(&settings.host)
            .await
            .with_context(|| format!("cannot listen on {}", settings.host))?;
        let addr = listener.local_addr()?;
        eprintln!("HyperLlama is listening on http://{addr}");
        run_server(listener, state, shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("HyperLlama is shutting down");
}
