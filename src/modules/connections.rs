//! Shared connections: the entries of connections.json and the clients built from them.
//!
//! A client (a database pool, a broker connection, a producer) is built once per connection
//! name and client type, on first use, and shared by every module and delivery that names it.
//! When building fails, nothing is cached and the next delivery tries again.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::ModuleError;
use crate::config::connections::ConnectionsConfig;

/// One connections.json entry.
#[derive(Clone)]
pub struct Connection {
    /// Its name in connections.json.
    pub name: String,
    /// Its `type`.
    pub kind: String,
    /// Every key of the entry (`type` included), after `{$VAR}` substitution.
    pub settings: Value,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Settings hold passwords: show only what identifies the entry.
        f.debug_struct("Connection")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The settings read into a typed struct; the error names the connection and the key.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, String> {
        let mut settings = self.settings.clone();
        if let Value::Object(map) = &mut settings {
            map.remove("type");
        }
        serde_path_to_error::deserialize(settings).map_err(|e| {
            let path = e.path().to_string();
            let inner = crate::config::explain_serde_error(&e.into_inner().to_string());
            if path == "." {
                format!("connection `{}`: {inner}", self.name)
            } else {
                format!("connection `{}`.{path}: {inner}", self.name)
            }
        })
    }
}

type ClientCell = Arc<OnceCell<Arc<dyn Any + Send + Sync>>>;

/// Every connection of connections.json, with the clients built from them so far.
#[derive(Default)]
pub struct Connections {
    entries: BTreeMap<String, Connection>,
    clients: Mutex<HashMap<(String, TypeId), ClientCell>>,
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("names", &self.entries.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Connections {
    /// The connections of a validated connections.json.
    pub fn new(config: &ConnectionsConfig) -> Self {
        let entries = config
            .connections
            .iter()
            .map(|(name, settings)| {
                let kind = settings
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let connection = Connection {
                    name: name.clone(),
                    kind,
                    settings: settings.clone(),
                };
                (name.clone(), connection)
            })
            .collect();
        Self {
            entries,
            clients: Mutex::default(),
        }
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&Connection> {
        self.entries.get(name)
    }

    /// Every connection name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The shared client of type `T` for connection `name`, built by `build` on first use.
    pub async fn client<T, F, Fut>(&self, name: &str, build: F) -> Result<Arc<T>, ModuleError>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ModuleError>>,
    {
        let cell = {
            let mut clients = self.clients.lock().expect("connection cache poisoned");
            clients
                .entry((name.to_owned(), TypeId::of::<T>()))
                .or_default()
                .clone()
        };
        let client = cell
            .get_or_try_init(|| async {
                let client: Arc<dyn Any + Send + Sync> = Arc::new(build().await?);
                Ok::<_, ModuleError>(client)
            })
            .await?
            .clone();
        Ok(client
            .downcast::<T>()
            .expect("a client cell holds the type it is keyed by"))
    }

    /// Forgets the client of type `T` for `name`, so the next use builds a new one (after the
    /// destination dropped the connection for good).
    pub fn forget<T: 'static>(&self, name: &str) {
        let mut clients = self.clients.lock().expect("connection cache poisoned");
        clients.remove(&(name.to_owned(), TypeId::of::<T>()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn connections() -> Connections {
        let config = ConnectionsConfig {
            connections: [(
                "db".to_owned(),
                serde_json::json!({"type": "postgresql", "host": "127.0.0.1", "password": "hunter22"}),
            )]
            .into_iter()
            .collect(),
        };
        Connections::new(&config)
    }

    #[tokio::test]
    async fn a_client_is_built_once_and_shared() {
        let connections = connections();
        let builds = AtomicU32::new(0);
        for _ in 0..3 {
            let client = connections
                .client("db", || async {
                    builds.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ModuleError>(7u32)
                })
                .await
                .unwrap();
            assert_eq!(*client, 7);
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_build_is_not_cached() {
        let connections = connections();
        let first = connections
            .client::<u32, _, _>("db", || async { Err(ModuleError::retryable("down")) })
            .await;
        assert_eq!(first.unwrap_err(), ModuleError::Retryable("down".into()));
        let second = connections
            .client("db", || async { Ok::<_, ModuleError>(1u32) })
            .await;
        assert_eq!(*second.unwrap(), 1);
    }

    #[test]
    fn debug_hides_settings() {
        let connections = connections();
        let shown = format!("{:?} {:?}", connections, connections.get("db").unwrap());
        assert!(!shown.contains("hunter22"), "{shown}");
        assert_eq!(connections.get("db").unwrap().kind, "postgresql");
    }
}
