//! The RabbitMQ connection of one buffer: connects on first use, and again after the broker
//! went away (lapin does not reconnect by itself), with one channel in confirm mode for
//! publishing. Also owns the small AMQP helpers the buffer shares (publish-and-confirm,
//! queue arguments, header values, the per-channel lock).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use crate::buffer::BufferError;
use crate::secret::Secret;

/// How long connecting (TCP, AMQP handshake, the publishing channel) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the broker may take to confirm a publish or answer a method.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the per-channel lock is waited for before the operation fails.
const LOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// The live connection and its publishing channel.
#[derive(Clone)]
pub(super) struct Live {
    pub conn: Arc<Connection>,
    pub publisher: Channel,
}

/// A connection that is made again when it was lost.
pub(super) struct Link {
    url: Secret<String>,
    name: String,
    live: tokio::sync::Mutex<Option<Live>>,
    /// Why the last attempt failed, for `/health/ready` and errors.
    last_error: Mutex<Option<String>>,
}

impl Link {
    pub(super) fn new(url: Secret<String>, name: String) -> Self {
        Self {
            url,
            name,
            live: tokio::sync::Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    /// The connection, made (again) if there is none or it broke.
    pub(super) async fn live(&self) -> Result<Live, BufferError> {
        let mut guard = self.live.lock().await;
        if let Some(live) = guard.as_ref()
            && live.conn.status().connected()
        {
            if live.publisher.status().connected() {
                return Ok(live.clone());
            }
            // A channel error closed the publisher; the connection is fine.
            let publisher = timed(async {
                let c = live.conn.create_channel().await?;
                c.confirm_select(ConfirmSelectOptions::default()).await?;
                Ok(c)
            })
            .await?;
            let live = Live {
                conn: live.conn.clone(),
                publisher,
            };
            *guard = Some(live.clone());
            return Ok(live);
        }
        if let Some(old) = guard.take() {
            let conn = old.conn;
            tokio::spawn(async move {
                let _ = conn.close(200, "reconnecting".into()).await;
            });
        }
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.name.clone()));
        let url = self.url.expose().clone();
        let made = tokio::time::timeout(CONNECT_TIMEOUT, async move {
            let conn = Connection::connect(&url, properties).await?;
            let publisher = conn.create_channel().await?;
            publisher
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>(Live {
                conn: Arc::new(conn),
                publisher,
            })
        })
        .await;
        match made {
            Ok(Ok(live)) => {
                *self.last_error.lock().expect("error lock") = None;
                *guard = Some(live.clone());
                Ok(live)
            }
            Ok(Err(e)) => Err(self.down(&e.to_string())),
            Err(_) => Err(self.down(&format!(
                "no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Records why the broker cannot be used and returns the error to answer with.
    pub(super) fn down(&self, why: &str) -> BufferError {
        *self.last_error.lock().expect("error lock") = Some(why.to_string());
        storage(why)
    }

    /// A new AMQP channel on the live connection.
    pub(super) async fn channel(&self) -> Result<Channel, BufferError> {
        let live = self.live().await?;
        timed(live.conn.create_channel()).await
    }

    /// Publishes through the shared confirm channel and waits for the broker's confirm.
    pub(super) async fn publish(
        &self,
        queue: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<Published, BufferError> {
        let live = self.live().await?;
        publish_on(&live.publisher, queue, payload, properties).await
    }

    /// Closes the connection (unacked deliveries go back to their queues).
    pub(super) async fn close(&self) {
        if let Some(live) = self.live.lock().await.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                live.conn.close(200, "wcon serve stops".into()),
            )
            .await;
        }
    }
}

/// What the broker said about a publish.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Published {
    /// Stored.
    Stored,
    /// Refused (`x-overflow: reject-publish` at `x-max-length`, or the queue failed).
    Refused,
}

/// Publishes `payload` to `queue` through the default exchange, mandatory and persistent, on a
/// channel in confirm mode, and waits for the confirm.
pub(super) async fn publish_on(
    channel: &Channel,
    queue: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<Published, BufferError> {
    let confirm = timed(channel.basic_publish(
        ShortString::from(""),
        ShortString::from(queue),
        BasicPublishOptions {
            mandatory: true,
            immediate: false,
        },
        payload,
        properties.with_delivery_mode(2),
    ))
    .await?;
    match tokio::time::timeout(CALL_TIMEOUT, confirm).await {
        Ok(Ok(Confirmation::Ack(None))) => Ok(Published::Stored),
        Ok(Ok(Confirmation::Ack(Some(_)))) => Err(storage(format!(
            "queue `{queue}` does not exist (the message was returned)"
        ))),
        Ok(Ok(Confirmation::Nack(_))) => Ok(Published::Refused),
        Ok(Ok(Confirmation::NotRequested)) => Err(storage("the channel is not in confirm mode")),
        Ok(Err(e)) => Err(storage(e)),
        Err(_) => Err(storage(format!(
            "no publisher confirm within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// Runs an AMQP call with [`CALL_TIMEOUT`].
pub(super) async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, BufferError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(storage),
        Err(_) => Err(storage(format!(
            "no answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// Declares a durable queue with `args`.
pub(super) async fn declare(
    channel: &Channel,
    queue: &str,
    args: FieldTable,
) -> Result<lapin::Queue, BufferError> {
    timed(declare_raw(channel, queue, args)).await
}

/// [`declare`] with lapin's own error (to look at its reply code).
pub(super) async fn declare_raw(
    channel: &Channel,
    queue: &str,
    args: FieldTable,
) -> Result<lapin::Queue, lapin::Error> {
    channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
}

/// Ready messages and consumers of an existing queue (0 when it does not exist yet).
pub(super) async fn counts(link: &Link, queue: &str) -> Result<(u64, u32), BufferError> {
    let channel = link.channel().await?;
    let got = tokio::time::timeout(
        CALL_TIMEOUT,
        channel.queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    let _ = channel.close(200, "done".into()).await;
    match got {
        Ok(Ok(q)) => Ok((u64::from(q.message_count()), q.consumer_count())),
        // NOT_FOUND closes the channel: the queue was never made.
        Ok(Err(e)) if is_code(&e, 404) => Ok((0, 0)),
        Ok(Err(e)) => Err(storage(e)),
        Err(_) => Err(storage("no answer to a passive queue.declare")),
    }
}

/// Holds the deployment-wide lock of one wcon channel: an exclusive queue, which only one
/// connection can declare and which the broker deletes when that connection dies. Dropping
/// the guard without [`Locked::unlock`] leaves the queue to the connection's end.
pub(super) struct Locked {
    pub channel: Channel,
    name: String,
}

impl Locked {
    /// Waits (bounded) for the lock `name`; the returned channel is in confirm mode.
    pub(super) async fn acquire(link: &Link, name: &str) -> Result<Self, BufferError> {
        let deadline = tokio::time::Instant::now() + LOCK_TIMEOUT;
        let mut pause = Duration::from_millis(2);
        loop {
            let channel = link.channel().await?;
            let got = tokio::time::timeout(
                CALL_TIMEOUT,
                channel.queue_declare(
                    ShortString::from(name),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: false,
                        durable: false,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                ),
            )
            .await;
            match got {
                Ok(Ok(_)) => {
                    timed(channel.confirm_select(ConfirmSelectOptions::default())).await?;
                    return Ok(Self {
                        channel,
                        name: name.to_string(),
                    });
                }
                // RESOURCE_LOCKED: another instance holds it (the channel is closed).
                Ok(Err(e)) if is_code(&e, 405) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(storage(format!(
                            "the channel lock `{name}` was held for {}s",
                            LOCK_TIMEOUT.as_secs()
                        )));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Ok(Err(e)) => return Err(storage(e)),
                Err(_) => return Err(storage("no answer to queue.declare")),
            }
        }
    }

    /// Releases the lock; deliveries taken and not acked go back to their queues.
    pub(super) async fn unlock(self) {
        let _ = timed(self.channel.queue_delete(
            ShortString::from(self.name.as_str()),
            QueueDeleteOptions::default(),
        ))
        .await;
        let _ = self.channel.close(200, "unlocked".into()).await;
    }
}

/// Whether `e` is a broker error with this reply code.
pub(super) fn is_code(e: &lapin::Error, code: u16) -> bool {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_id() == code,
        _ => false,
    }
}

/// A table of string keys.
pub(super) fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// A text argument value.
pub(super) fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// A number argument value.
pub(super) fn number(n: i64) -> AMQPValue {
    AMQPValue::LongLongInt(n)
}

/// An integer header of a delivery, whatever width the broker chose.
pub(super) fn header_int(properties: &BasicProperties, name: &str) -> Option<i64> {
    let value = properties.headers().as_ref()?.inner().get(name)?;
    Some(match value {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    })
}

/// A storage error; never carries the URL (it may hold a password).
pub(super) fn storage(e: impl std::fmt::Display) -> BufferError {
    BufferError::Storage(format!("rabbitmq: {e}"))
}
