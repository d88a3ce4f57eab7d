//! An etcd watch as a stream of single events.
//!
//! etcd sends events in batches per response and ends a watch it can no longer serve with a
//! "canceled" response (for compaction: with the compact revision). Both become items here:
//! events one by one, then one final error item.

use std::collections::VecDeque;

use futures::StreamExt;

use super::convert;
use super::errors::{ErrorContext, map_error};
use super::prefix::KeyPrefix;
use crate::MetaError;
use crate::store::{Revision, WatchEvent, WatchStream};

struct State {
    // Holds the request sender too: dropping it would end the watch.
    stream: etcd_client::WatchStream,
    prefix: KeyPrefix,
    buffered: VecDeque<WatchEvent>,
    ending: Option<MetaError>,
    done: bool,
    /// The first revision not yet delivered, for the compaction error.
    next_revision: Revision,
}

pub(crate) fn into_stream(
    stream: etcd_client::WatchStream,
    prefix: KeyPrefix,
    from_revision: Revision,
) -> WatchStream {
    let state = State {
        stream,
        prefix,
        buffered: VecDeque::new(),
        ending: None,
        done: false,
        next_revision: from_revision,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if state.done {
                return None;
            }
            if let Some(event) = state.buffered.pop_front() {
                state.next_revision = event.kv.mod_revision + 1;
                return Some((Ok(event), state));
            }
            if let Some(error) = state.ending.take() {
                state.done = true;
                return Some((Err(error), state));
            }
            match state.stream.message().await {
                Ok(Some(response)) => {
                    let prefix = &state.prefix;
                    state.buffered.extend(
                        response
                            .events()
                            .iter()
                            .filter_map(|event| convert::event(prefix, event)),
                    );
                    if response.canceled() {
                        state.ending = Some(if response.compact_revision() > 0 {
                            MetaError::Compacted {
                                requested: state.next_revision,
                                compact_revision: response.compact_revision(),
                            }
                        } else {
                            MetaError::Unavailable(format!(
                                "etcd cancelled the watch: {}",
                                response.cancel_reason()
                            ))
                        });
                    }
                }
                Ok(None) => {
                    state.ending = Some(MetaError::Unavailable(
                        "etcd closed the watch stream".to_owned(),
                    ));
                }
                Err(error) => state.ending = Some(map_error(error, &ErrorContext::default())),
            }
        }
    })
    .boxed()
}
