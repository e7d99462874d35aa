//! Streaming transports of the connector. Each turns a server stream into deliveries and acks.

pub mod ws;
