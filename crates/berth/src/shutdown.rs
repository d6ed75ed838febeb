//! One shutdown signal (Ctrl-C or SIGTERM) fanned out to every role.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A shutdown trigger whose [`Shutdown::wait`] futures resolve once it fires.
#[derive(Clone)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }

    /// Fires on Ctrl-C or SIGTERM.
    pub fn on_signals(&self) -> std::io::Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutting down");
            tx.send_replace(true);
        });
        Ok(())
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Resolves once shutdown is triggered.
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await.map(drop);
        }
    }
}
