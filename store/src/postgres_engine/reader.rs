//! The engine's snapshot reader: a `REPEATABLE READ` transaction kept open
//! on one pooled connection for a writer's look-ups.

use deadpool_postgres::Object;

use super::{many_read, point_read, PostgresEngine, NAME};
use crate::engine::{EngineError, Reader};

/// A `REPEATABLE READ` transaction on a pooled connection, rolled back
/// (and the connection returned) when the reader is dropped. The
/// connection travels to the runtime for each query and comes back.
pub(super) struct PostgresReader<'e> {
    engine: &'e PostgresEngine,
    client: std::sync::Mutex<Option<Object>>,
}

impl<'e> PostgresReader<'e> {
    /// A reader over `client`, whose snapshot transaction has begun.
    pub(super) fn new(engine: &'e PostgresEngine, client: Object) -> Self {
        Self {
            engine,
            client: std::sync::Mutex::new(Some(client)),
        }
    }

    /// Run `read` on the snapshot's connection.
    fn on_snapshot<T: Send + 'static, F>(
        &self,
        read: impl FnOnce(Object) -> F,
    ) -> Result<T, EngineError>
    where
        F: std::future::Future<Output = (Result<T, EngineError>, Object)> + Send + 'static,
    {
        let mut held = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let client = held.take().ok_or_else(|| EngineError::Io {
            engine: NAME,
            message: "the snapshot's connection was lost".into(),
        })?;
        let future = read(client);
        let (answer, client) = self.engine.run(async move { Ok(future.await) })?;
        *held = Some(client);
        answer
    }
}

impl Reader for PostgresReader<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let key = key.to_vec();
        self.on_snapshot(|client| async move { (point_read(&client, &key).await, client) })
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        let wanted: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        self.on_snapshot(|client| async move { (many_read(&client, wanted).await, client) })
    }
}

impl Drop for PostgresReader<'_> {
    fn drop(&mut self) {
        let held = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = held.take() {
            // Back to the pool only once the snapshot has ended; a failed
            // rollback drops the connection instead.
            self.engine.runtime.spawn(async move {
                if client.batch_execute("ROLLBACK").await.is_err() {
                    drop(Object::take(client));
                }
            });
        }
    }
}
