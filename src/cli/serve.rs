//! `culprit serve`: the service on its configured address until Ctrl-C or SIGTERM.

use anyhow::Result;
use culprit::serve::config::ServeConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The config file (TOML; see docs/serve.md). Without one: defaults, and the only token
    /// is $CULPRIT_ADMIN_TOKEN.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen here instead of the config's `listen` (e.g. 127.0.0.1:0 for any free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Keep data here instead of the config's `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    let mut cfg = match &a.config {
        Some(p) => culprit::serve::config::load(p)?,
        None => ServeConfig::default(),
    };
    if let Some(l) = a.listen {
        cfg.listen = l;
    }
    if let Some(d) = a.data_dir {
        cfg.data_dir = d;
    }
    super::runtime()?.block_on(async {
        let listen = cfg.listen;
        let app = culprit::serve::App::start(cfg, a.config, &|k| std::env::var(k).ok()).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| culprit::serve::ServeError::Io { path: listen.to_string(), source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| culprit::serve::ServeError::Io { path: listen.to_string(), source })?;
        eprintln!("culprit serve: listening on http://{addr} (data in {})", app.config().data_dir.display());
        culprit::serve::run(listener, app, culprit::serve::signal()).await?;
        eprintln!("culprit serve: stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
