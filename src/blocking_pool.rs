//! A bounded pool for CPU-heavy work (PBKDF2): at most one job per core runs at
//! once, the rest wait their turn without blocking any reactor or Arbiter thread.
//! Registrations go through a bounded queue in front of it, so a flood of them
//! is refused early instead of making every login wait behind it.

use std::sync::Arc;

use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the CPU pool is shut down")]
    Closed,
    #[error("a CPU job panicked")]
    Panicked,
    #[error("too many jobs of this kind are already waiting")]
    Busy,
}

#[derive(Clone, Debug)]
pub struct CpuPool {
    permits: Arc<Semaphore>,
    /// Slots for jobs submitted with `run_queued`, running or waiting.
    queue: Arc<Semaphore>,
}

impl CpuPool {
    /// `workers` jobs at once; at most `max_queued` of them (and those waiting)
    /// from `run_queued`.
    pub fn new(workers: usize, max_queued: usize) -> Self {
        CpuPool {
            permits: Arc::new(Semaphore::new(workers.max(1))),
            queue: Arc::new(Semaphore::new(max_queued.max(1))),
        }
    }

    /// Like `run`, but refused at once with `Busy` when the queue is full.
    pub async fn run_queued<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let slot = self
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| PoolError::Busy)?;
        let result = self.run(job).await;
        drop(slot);
        result
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once_while_plain_jobs_still_run() {
        let pool = CpuPool::new(1, 2);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let blocked = |pool: &CpuPool| {
            let (pool, gate) = (pool.clone(), gate.clone());
            tokio::spawn(async move {
                pool.run_queued(move || {
                    let _ = gate.lock().map(|g| g.recv());
                })
                .await
            })
        };
        let first = blocked(&pool);
        let second = blocked(&pool);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(matches!(pool.run_queued(|| ()).await, Err(PoolError::Busy)));
        release.send(()).unwrap();
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
        assert!(pool.run_queued(|| ()).await.is_ok());
    }
}
