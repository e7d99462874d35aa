//! Streaming transports of the connector. Each turns a server stream into deliveries and acks.

pub mod http_ack;
pub mod long_poll;
pub mod sse;
pub mod ws;
