//! A bounded pool for CPU-heavy work (PBKDF2): at most one job per core runs at
//! once, the rest wait their turn without blocking any reactor or Arbiter thread.

use std::sync::Arc;

use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the CPU pool is shut down")]
    Closed,
    #[error("a CPU job panicked")]
    Panicked,
}

#[derive(Clone, Debug)]
pub struct CpuPool {
    permits: Arc<Semaphore>,
}

impl CpuPool {
    pub fn new(workers: usize) -> Self {
        CpuPool {
            permits: Arc::new(Semaphore::new(workers.max(1))),
        }
    }

    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PoolError::Closed)?;
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await;
        result.map_err(|_| PoolError::Panicked)
    }
}
