//! Watches of the embedded store.
//!
//! A watch subscribes to live commits *before* it reads the history it must replay, then
//! skips live batches it already replayed (by revision), so nothing falls into a gap between
//! replay and live delivery. A watcher too slow for the live channel catches up from the
//! history table the same way; only if that history was trimmed meanwhile does it end with
//! [`MetaError::Compacted`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Inner;
use crate::MetaError;
use crate::store::{KeyRange, Revision, WatchEvent, WatchStream};

/// The events one revision produced.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) revision: Revision,
    pub(crate) events: Vec<WatchEvent>,
}

/// Revisions read from history per blocking read, bounding a catching-up watcher's memory.
const REPLAY_CHUNK: usize = 256;
/// Events buffered for a watcher before it holds the live channel back.
const STREAM_BUFFER: usize = 256;

pub(crate) fn start(inner: &Arc<Inner>, range: KeyRange, from_revision: Revision) -> WatchStream {
    // Subscribe before reading the revision: every commit after that read is then delivered
    // live (see the module docs).
    let live = inner.events.subscribe();
    let current = inner.revision.load(Ordering::SeqCst);
    let next = if from_revision <= 0 {
        current + 1
    } else {
        from_revision
    };
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(run(Arc::downgrade(inner), range, next, live, sender));
    ReceiverStream::new(receiver).boxed()
}

type Sender = mpsc::Sender<Result<WatchEvent, MetaError>>;

async fn run(
    inner: Weak<Inner>,
    range: KeyRange,
    mut next: Revision,
    mut live: broadcast::Receiver<Arc<Batch>>,
    sender: Sender,
) {
    if let Err(error) = catch_up(&inner, &range, &mut next, &sender).await {
        let _ = sender.send(Err(error)).await;
        return;
    }
    loop {
        let received = tokio::select! {
            () = sender.closed() => return,
            received = live.recv() => received,
        };
        match received {
            Ok(batch) => {
                if batch.revision < next {
                    continue;
                }
                if !deliver(&sender, &range, &batch).await {
                    return;
                }
                next = batch.revision + 1;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if let Err(error) = catch_up(&inner, &range, &mut next, &sender).await {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                let _ = sender.send(Err(closed())).await;
                return;
            }
        }
    }
}

fn closed() -> MetaError {
    MetaError::Unavailable("the embedded metadata store was closed".to_owned())
}

/// Sends the batch's events in `range`; false once the watcher is gone.
async fn deliver(sender: &Sender, range: &KeyRange, batch: &Batch) -> bool {
    for event in &batch.events {
        if range.contains(&event.kv.key) && sender.send(Ok(event.clone())).await.is_err() {
            return false;
        }
    }
    true
}

/// Replays history from `next` up to the latest commit.
async fn catch_up(
    inner: &Weak<Inner>,
    range: &KeyRange,
    next: &mut Revision,
    sender: &Sender,
) -> Result<(), MetaError> {
    loop {
        let store = inner.upgrade().ok_or_else(closed)?;
        let from = *next;
        let batches = tokio::task::spawn_blocking(move || store.history(from, REPLAY_CHUNK))
            .await
            .map_err(|error| MetaError::Internal(format!("history read failed: {error}")))??;
        let done = batches.len() < REPLAY_CHUNK;
        for batch in batches {
            if !deliver(sender, range, &batch).await {
                return Ok(());
            }
            *next = batch.revision + 1;
        }
        if done {
            return Ok(());
        }
    }
}
