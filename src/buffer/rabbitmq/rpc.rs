//! Questions one instance asks all others over RabbitMQ: "settle this lease if you hold it"
//! (an ack or nack that arrived through an instance not holding the connection), "how many
//! leases and prefetched messages do you have", "which leases". Leases live in the instance
//! whose AMQP channel received the delivery, so these are how every instance answers alike.
//!
//! Each instance consumes a server-named exclusive queue bound to the fanout exchange
//! `p.rpc` (requests) that also receives the answers, and keeps a consumer on `p.presence`, so
//! that queue's consumer count says how many instances will answer. With one instance the
//! questions are answered locally.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::link::{counts, storage, timed};
use super::{Inner, RabbitBuffer, Settle};
use crate::buffer::{BufferError, InFlight, NackOutcome};
use crate::message::MessageMeta;
use crate::protocol::{ChannelName, ConnectionId, MessageId};

/// How long an answer from the other instances is waited for.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Settle {
        channel: ChannelName,
        connection: ConnectionId,
        id: MessageId,
        op: Settle,
    },
    Counts {
        channel: ChannelName,
    },
    Leases {
        channel: ChannelName,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    /// 0: not held there, 1: acked or requeued, 2: dead-lettered.
    Settled(u8),
    Counts(u64, u64),
    Leases(Vec<(MessageMeta, ConnectionId)>),
}

/// The request/answer plumbing of one buffer.
pub(super) struct Rpc {
    exchange: String,
    presence: String,
    /// The queue answers come to, once the consumer runs.
    reply_to: watch::Sender<Option<String>>,
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<Answer>>>,
    started: Mutex<bool>,
}

impl Rpc {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}rpc"),
            presence: format!("{prefix}presence"),
            reply_to: watch::channel(None).0,
            waiting: Mutex::new(HashMap::new()),
            started: Mutex::new(false),
        }
    }

    /// Starts answering (once) and waits until this instance is reachable.
    pub(super) async fn start(&self, buffer: &RabbitBuffer) -> Result<(), BufferError> {
        let first = {
            let mut started = self.started.lock().expect("rpc lock");
            !std::mem::replace(&mut *started, true)
        };
        if first {
            tokio::spawn(serve(Arc::downgrade(&buffer.inner)));
        }
        let mut rx = self.reply_to.subscribe();
        let ready = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|r| r.is_some()));
        match ready.await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(buffer.inner.link.down("cannot reach RabbitMQ")),
        }
    }

    /// Settles a lease another instance holds; `None` when nobody holds it.
    pub(super) async fn settle(
        &self,
        buffer: &RabbitBuffer,
        channel: &ChannelName,
        connection: &ConnectionId,
        id: &MessageId,
        op: Settle,
    ) -> Result<Option<NackOutcome>, BufferError> {
        let request = Request::Settle {
            channel: channel.clone(),
            connection: connection.clone(),
            id: id.clone(),
            op,
        };
        let answers = self
            .ask(buffer, &request, |a| matches!(a, Answer::Settled(1 | 2)))
            .await?;
        Ok(answers.into_iter().find_map(|a| match a {
            Answer::Settled(1) => Some(NackOutcome::Requeued),
            Answer::Settled(2) => Some(NackOutcome::DeadLettered),
            _ => None,
        }))
    }

    /// Leases and prefetched deliveries of a channel over all instances.
    pub(super) async fn counts(
        &self,
        buffer: &RabbitBuffer,
        channel: &ChannelName,
    ) -> Result<(u64, u64), BufferError> {
        let request = Request::Counts {
            channel: channel.clone(),
        };
        let mut total = (0, 0);
        for a in self.ask(buffer, &request, |_| false).await? {
            if let Answer::Counts(h, w) = a {
                total.0 += h;
                total.1 += w;
            }
        }
        Ok(total)
    }

    /// Leases of a channel over all instances, oldest first.
    pub(super) async fn leases(
        &self,
        buffer: &RabbitBuffer,
        channel: &ChannelName,
    ) -> Result<Vec<InFlight>, BufferError> {
        let request = Request::Leases {
            channel: channel.clone(),
        };
        let mut all = Vec::new();
        for a in self.ask(buffer, &request, |_| false).await? {
            if let Answer::Leases(rows) = a {
                all.extend(
                    rows.into_iter()
                        .map(|(meta, connection)| InFlight { meta, connection }),
                );
            }
        }
        all.sort_by_key(|l| l.meta.sequence);
        Ok(all)
    }

    /// Asks every instance (this one included) and collects their answers, until each
    /// answered, one answer is `enough`, or [`ANSWER_TIMEOUT`].
    async fn ask(
        &self,
        buffer: &RabbitBuffer,
        request: &Request,
        enough: impl Fn(&Answer) -> bool,
    ) -> Result<Vec<Answer>, BufferError> {
        let (_, instances) = counts(&buffer.inner.link, &self.presence).await?;
        if instances <= 1 {
            return Ok(vec![answer(buffer, request, false).await]);
        }
        let Some(reply_to) = self.reply_to.borrow().clone() else {
            return Err(storage("not connected"));
        };
        let corr = MessageId::generate().as_str().to_string();
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiting
            .lock()
            .expect("rpc lock")
            .insert(corr.clone(), tx);
        let body = serde_json::to_vec(request).map_err(storage)?;
        let sent = async {
            let live = buffer.inner.link.live().await?;
            timed(
                live.publisher.basic_publish(
                    ShortString::from(self.exchange.as_str()),
                    ShortString::from(""),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default()
                        .with_reply_to(ShortString::from(reply_to))
                        .with_correlation_id(ShortString::from(corr.as_str())),
                ),
            )
            .await
        }
        .await;
        let mut answers = Vec::new();
        if sent.is_ok() {
            let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
            while answers.len() < instances as usize {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(a)) => {
                        let done = enough(&a);
                        answers.push(a);
                        if done {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        }
        self.waiting.lock().expect("rpc lock").remove(&corr);
        sent?;
        Ok(answers)
    }
}

/// This instance's answer to `request`.
async fn answer(buffer: &RabbitBuffer, request: &Request, remote: bool) -> Answer {
    match request {
        Request::Settle {
            channel,
            connection,
            id,
            op,
        } => {
            if !remote {
                // Asked locally and not held here: nobody else is there to ask.
                return Answer::Settled(0);
            }
            match buffer
                .settle_local(channel, connection, id, op.clone())
                .await
            {
                Ok(Some(NackOutcome::DeadLettered)) => Answer::Settled(2),
                Ok(Some(NackOutcome::Requeued)) => Answer::Settled(1),
                _ => Answer::Settled(0),
            }
        }
        Request::Counts { channel } => {
            let (h, w) = buffer.local_counts(channel);
            Answer::Counts(h, w)
        }
        Request::Leases { channel } => Answer::Leases(
            buffer
                .local_leases(channel)
                .into_iter()
                .map(|l| (l.meta, l.connection))
                .collect(),
        ),
    }
}

/// Consumes requests and answers until the buffer is gone, connecting again after failures.
async fn serve(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let stop = strong.stop.clone();
        if stop.is_cancelled() {
            return;
        }
        let buffer = RabbitBuffer { inner: strong };
        let result = serve_once(&buffer).await;
        buffer.inner.rpc.reply_to.send_replace(None);
        drop(buffer);
        if let Err(e) = result {
            tracing::debug!(error = %e, "rabbitmq buffer rpc restarts");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
}

async fn serve_once(buffer: &RabbitBuffer) -> Result<(), BufferError> {
    let rpc = &buffer.inner.rpc;
    let ch = buffer.inner.link.channel().await?;
    timed(ch.exchange_declare(
        ShortString::from(rpc.exchange.as_str()),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await?;
    let own = timed(ch.queue_declare(
        ShortString::from(""),
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await?;
    let own = own.name().as_str().to_string();
    timed(ch.queue_bind(
        ShortString::from(own.as_str()),
        ShortString::from(rpc.exchange.as_str()),
        ShortString::from(""),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await?;
    timed(ch.queue_declare(
        ShortString::from(rpc.presence.as_str()),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await?;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let _presence = timed(ch.basic_consume(
        ShortString::from(rpc.presence.as_str()),
        ShortString::from(""),
        no_ack,
        FieldTable::default(),
    ))
    .await?;
    let mut requests = timed(ch.basic_consume(
        ShortString::from(own.as_str()),
        ShortString::from(""),
        no_ack,
        FieldTable::default(),
    ))
    .await?;
    rpc.reply_to.send_replace(Some(own.clone()));
    let stop = buffer.inner.stop.clone();
    loop {
        let d = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            d = requests.next() => d,
        };
        let d = d
            .ok_or_else(|| storage("the rpc consumer ended"))?
            .map_err(storage)?;
        let corr = d
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();
        if let Ok(a) = serde_json::from_slice::<Answer>(&d.data) {
            if let Some(tx) = rpc.waiting.lock().expect("rpc lock").get(&corr) {
                let _ = tx.send(a);
            }
            continue;
        }
        let Ok(request) = serde_json::from_slice::<Request>(&d.data) else {
            continue;
        };
        let Some(reply_to) = d
            .properties
            .reply_to()
            .as_ref()
            .map(|r| r.as_str().to_string())
        else {
            continue;
        };
        let buffer = buffer.clone();
        tokio::spawn(async move {
            let a = answer(&buffer, &request, true).await;
            if let Ok(body) = serde_json::to_vec(&a) {
                let props = BasicProperties::default().with_correlation_id(ShortString::from(corr));
                let _ = buffer.inner.link.publish(&reply_to, &body, props).await;
            }
        });
    }
}
