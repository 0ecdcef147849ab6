//! A bounded pool for CPU-heavy work (PBKDF2): at most one job per core runs at
//! once, the rest wait their turn without blocking any reactor or Arbiter thread.
//! Registrations and PLAIN logins each go through a bounded queue in front of
//! it, so a flood of either is refused early instead of making everyone wait.

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

/// The bounded queues in front of the pool, one per kind of job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// Deriving keys for a new password.
    Registration,
    /// Checking a PLAIN password.
    Login,
}

#[derive(Clone, Debug)]
pub struct CpuPool {
    permits: Arc<Semaphore>,
    /// Slots for jobs submitted with `run_queued`, running or waiting.
    registrations: Arc<Semaphore>,
    logins: Arc<Semaphore>,
}

impl CpuPool {
    /// `workers` jobs at once; at most `registrations` (and `logins`) of them,
    /// running or waiting, from `run_queued` on that queue.
    pub fn new(workers: usize, registrations: usize, logins: usize) -> Self {
        CpuPool {
            permits: Arc::new(Semaphore::new(workers.max(1))),
            registrations: Arc::new(Semaphore::new(registrations.max(1))),
            logins: Arc::new(Semaphore::new(logins.max(1))),
        }
    }

    /// Like `run`, but refused at once with `Busy` when `queue` is full.
    pub async fn run_queued<T, F>(&self, queue: Queue, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let queue = match queue {
            Queue::Registration => &self.registrations,
            Queue::Login => &self.logins,
        };
        let slot = queue
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
        let pool = CpuPool::new(1, 2, 1);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let blocked = |pool: &CpuPool| {
            let (pool, gate) = (pool.clone(), gate.clone());
            tokio::spawn(async move {
                pool.run_queued(Queue::Registration, move || {
                    let _ = gate.lock().map(|g| g.recv());
                })
                .await
            })
        };
        let first = blocked(&pool);
        let second = blocked(&pool);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(matches!(
            pool.run_queued(Queue::Registration, || ()).await,
            Err(PoolError::Busy)
        ));
        // The other queue has its own slots (its job waits for a worker).
        let login = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run_queued(Queue::Login, || 5).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(matches!(
            pool.run_queued(Queue::Login, || ()).await,
            Err(PoolError::Busy)
        ));
        release.send(()).unwrap();
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(login.await.unwrap().unwrap(), 5);
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
        assert!(pool.run_queued(Queue::Registration, || ()).await.is_ok());
    }
}
