//! The queue both batched writers share (`ingest.rs`, `records.rs`): what
//! arrives while every writer is busy waits, and goes together in the next
//! batch a free writer takes.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

/// Takes what is queued on `rx`, up to `max` at a time, whenever one of
/// `writers` is free, and writes it with `write` on a task of its own.
/// Ends when every sender is gone.
pub(super) async fn run<T, W, F>(mut rx: mpsc::Receiver<T>, writers: usize, max: usize, write: W)
where
    T: Send + 'static,
    W: Fn(Vec<T>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let writers = Arc::new(Semaphore::new(writers));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = Arc::clone(&writers).acquire_owned().await else {
            return;
        };
        // Whatever arrived while a writer was being waited for goes too.
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let written = write(batch);
        tokio::spawn(async move {
            written.await;
            drop(permit);
        });
    }
}
