//! What every module that writes into a table shares: checking identifiers before they are
//! written into a statement, and creating the table once.
//!
//! Names that reach SQL text are refused unless they are plain identifiers, never escaped.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use super::ModuleError;

/// The longest identifier PostgreSQL (63 bytes), MySQL (64) and ClickHouse all keep unchanged.
pub const MAX_IDENTIFIER: usize = 63;

/// Checks that `name` is a plain identifier: ASCII letters, digits and `_`, not starting with
/// a digit, at most [`MAX_IDENTIFIER`] characters. `what` names the key in the error.
pub fn check_identifier(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !starts_well
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.len() > MAX_IDENTIFIER
    {
        return Err(format!(
            "{what} `{name}` is not a valid SQL identifier: use letters, digits and `_`, starting with a letter or `_`, at most {MAX_IDENTIFIER} characters"
        ));
    }
    Ok(())
}

/// Remembers that the table exists, so `CREATE TABLE` runs once per module, not per delivery.
#[derive(Debug, Default)]
pub struct TableReady {
    ready: AtomicBool,
    creating: tokio::sync::Mutex<()>,
}

impl TableReady {
    /// Runs `create` unless it already succeeded; concurrent callers wait for one run.
    pub async fn ensure<F, Fut>(&self, create: F) -> Result<(), ModuleError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), ModuleError>>,
    {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.creating.lock().await;
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        create().await?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Forgets it: the database said the table is gone, so the next delivery creates it again.
    pub fn reset(&self) {
        self.ready.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn identifiers_are_plain_or_refused() {
        for good in ["events", "_x", "Events_2024", "a"] {
            check_identifier("t", good).unwrap();
        }
        for bad in [
            "",
            "2x",
            "x-y",
            "x y",
            "x;drop table y",
            "x\"",
            "x`",
            "é",
            &"a".repeat(64),
        ] {
            assert!(check_identifier("t", bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_table_is_created_once_until_reset() {
        let ready = TableReady::default();
        let runs = AtomicU32::new(0);
        let create = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        ready.ensure(create).await.unwrap();
        ready.ensure(create).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        ready.reset();
        ready.ensure(create).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let failed = TableReady::default();
        failed
            .ensure(|| async { Err(ModuleError::retryable("down")) })
            .await
            .unwrap_err();
        failed.ensure(create).await.unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "a failed creation is tried again"
        );
    }
}
