//! The per-channel streams every instance reads: `…seq` (one tick per stored message; its
//! stream offset + 1 is the message's sequence, shared by all instances) and `…done` (which
//! messages left the queue or came back to it). Folding both gives the side index that
//! `queued` lists from, since a queue cannot be browsed without disturbing it. The reader
//! task also moves messages that expired in the queue (dead-lettered by RabbitMQ to
//! `…expired`) into the dead letters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::link::{Link, declare, header_int, number, table, text, timed};
use super::{Chan, bury, unwrap};
use crate::buffer::{BufferError, DeadReason};
use crate::message::MessageMeta;
use crate::protocol::MessageId;

/// A `…done` event: messages that left the queue (acked, dead-lettered) or came back to it
/// (replayed). `nonce` lets the writer wait until its own event is folded.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct DoneEvent {
    pub nonce: String,
    #[serde(default)]
    pub done: Vec<MessageId>,
    #[serde(default)]
    pub requeued: Vec<MessageMeta>,
}

/// What this instance folded from the two streams.
#[derive(Default)]
pub(super) struct Index {
    /// Messages not known to have left the queue, by sequence.
    metas: BTreeMap<u64, MessageMeta>,
    by_id: HashMap<MessageId, u64>,
    /// Done before their tick was read (the streams are read side by side).
    gone: HashSet<MessageId>,
    /// Offsets to resume the streams at after a reconnect.
    seq_next: Option<i64>,
    done_next: Option<i64>,
    /// Writers waiting for their tick (by message id) or done event (by nonce).
    echo: HashMap<String, oneshot::Sender<u64>>,
}

impl Index {
    /// Registers a writer that waits for `nonce` to be folded.
    pub(super) fn expect(&mut self, nonce: &str) -> oneshot::Receiver<u64> {
        let (tx, rx) = oneshot::channel();
        self.echo.insert(nonce.to_string(), tx);
        rx
    }

    pub(super) fn forget(&mut self, nonce: &str) {
        self.echo.remove(nonce);
    }

    /// Metadata of messages still in the queue, oldest first, skipping `leased`.
    pub(super) fn waiting(&self, leased: &HashSet<MessageId>, limit: usize) -> Vec<MessageMeta> {
        self.metas
            .values()
            .filter(|m| !leased.contains(&m.id))
            .take(limit)
            .cloned()
            .collect()
    }

    fn tick(&mut self, offset: i64, mut meta: MessageMeta) {
        let sequence = offset as u64 + 1;
        self.seq_next = Some(offset + 1);
        if let Some(tx) = self.echo.remove(meta.id.as_str()) {
            let _ = tx.send(sequence);
        }
        if self.gone.remove(&meta.id) {
            return;
        }
        meta.sequence = sequence;
        self.by_id.insert(meta.id.clone(), sequence);
        self.metas.insert(sequence, meta);
    }

    fn done(&mut self, offset: i64, event: DoneEvent) {
        self.done_next = Some(offset + 1);
        for id in event.done {
            match self.by_id.remove(&id) {
                Some(seq) => {
                    self.metas.remove(&seq);
                }
                None => {
                    self.gone.insert(id);
                }
            }
        }
        for meta in event.requeued {
            self.gone.remove(&meta.id);
            self.by_id.insert(meta.id.clone(), meta.sequence);
            self.metas.insert(meta.sequence, meta);
        }
        if let Some(tx) = self.echo.remove(&event.nonce) {
            let _ = tx.send(0);
        }
    }
}

/// Declares the channel's two streams. Also done before reading them again after a failure:
/// after an unclean restart, RabbitMQ 3.10 starts its stream coordinator (and so the streams)
/// again only when a stream is declared.
pub(super) async fn declare_streams(
    ch: &lapin::Channel,
    names: &super::Names,
) -> Result<(), BufferError> {
    for q in [&names.seq, &names.done] {
        declare(
            ch,
            q,
            table(&[
                ("x-queue-type", text("stream")),
                ("x-max-length-bytes", number(super::STREAM_MAX_BYTES)),
                ("x-stream-max-segment-size-bytes", number(8 * 1024 * 1024)),
            ]),
        )
        .await?;
    }
    Ok(())
}

/// Where a stream consumer starts: after what was folded, or at the stream's first message.
fn offset_arg(next: Option<i64>) -> FieldTable {
    table(&[(
        "x-stream-offset",
        match next {
            Some(n) => number(n),
            None => text("first"),
        },
    )])
}

/// Reads the channel's streams and its `…expired` queue until `stop`, connecting again after
/// failures.
pub(super) async fn read(link: Arc<Link>, chan: Arc<Chan>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        if let Err(e) = read_once(&link, &chan, &stop).await {
            tracing::debug!(channel = %chan.name(), error = %e, "rabbitmq buffer reader restarts");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
    }
}

async fn read_once(
    link: &Arc<Link>,
    chan: &Arc<Chan>,
    stop: &CancellationToken,
) -> Result<(), BufferError> {
    let ch = link.channel().await?;
    declare_streams(&ch, &chan.names).await?;
    timed(ch.basic_qos(1000, BasicQosOptions::default())).await?;
    let (seq_next, done_next) = {
        let index = chan.index.lock().expect("index lock");
        (index.seq_next, index.done_next)
    };
    let consume = |queue: &str, args: FieldTable| {
        ch.basic_consume(
            ShortString::from(queue),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            args,
        )
    };
    let mut seq = timed(consume(&chan.names.seq, offset_arg(seq_next))).await?;
    let mut done = timed(consume(&chan.names.done, offset_arg(done_next))).await?;
    let mut expired = timed(consume(&chan.names.expired, FieldTable::default())).await?;
    let lost = || super::link::storage("a stream consumer ended");
    let result = loop {
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            d = seq.next() => {
                let d = d.ok_or_else(lost)?.map_err(super::link::storage)?;
                let offset = header_int(&d.properties, "x-stream-offset").unwrap_or(-1);
                if let Ok(meta) = serde_json::from_slice::<MessageMeta>(&d.data)
                    && offset >= 0
                {
                    chan.index.lock().expect("index lock").tick(offset, meta);
                }
                let _ = d.acker.ack(BasicAckOptions::default()).await;
            }
            d = done.next() => {
                let d = d.ok_or_else(lost)?.map_err(super::link::storage)?;
                let offset = header_int(&d.properties, "x-stream-offset").unwrap_or(-1);
                if let Ok(event) = serde_json::from_slice::<DoneEvent>(&d.data)
                    && offset >= 0
                {
                    chan.index.lock().expect("index lock").done(offset, event);
                }
                let _ = d.acker.ack(BasicAckOptions::default()).await;
            }
            d = expired.next() => {
                let d = d.ok_or_else(lost)?.map_err(super::link::storage)?;
                match unwrap(&d.data, &d.properties, d.redelivered) {
                    Ok(mut m) => {
                        // It was never delivered this time round.
                        m.delivery_count = m.delivery_count.saturating_sub(1);
                        bury(link, chan, m, DeadReason::Expired, None, Some(d.acker)).await?;
                    }
                    Err(e) => {
                        tracing::warn!(channel = %chan.name(), error = %e, "dropping an unreadable expired message");
                        let _ = d.acker.ack(BasicAckOptions::default()).await;
                    }
                }
            }
        }
    };
    let _ = ch.close(200, "reader stops".into()).await;
    result
}
