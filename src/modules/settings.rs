//! Small serde helpers for module and connection settings.
//!
//! `{$VAR}` substitution turns `"port": "{$PORT}"` into the string `"5672"`, so numbers are
//! accepted written either way. Passwords are kept in [`Password`], whose `Debug` hides them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A number written as a JSON number or as a string of digits.
pub fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + TryFrom<u64> + TryFrom<i64>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Unsigned(u64),
        Signed(i64),
        Text(String),
    }
    let invalid = || serde::de::Error::custom("expected a number in range");
    match Raw::deserialize(deserializer)? {
        Raw::Unsigned(n) => T::try_from(n).map_err(|_| invalid()),
        Raw::Signed(n) => T::try_from(n).map_err(|_| invalid()),
        Raw::Text(s) => s.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("expected a number, got the string `{s}`"))
        }),
    }
}

/// Like [`number`], for an optional key.
pub fn optional_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + TryFrom<u64> + TryFrom<i64>,
{
    #[derive(Deserialize)]
    struct Wrap<T: FromStr + TryFrom<u64> + TryFrom<i64>>(#[serde(deserialize_with = "number")] T);
    Ok(Option::<Wrap<T>>::deserialize(deserializer)?.map(|Wrap(v)| v))
}

/// A boolean written as `true`/`false` or as the strings `"true"`/`"false"` (also `"1"`/`"0"`).
pub fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Bool(b) => Ok(b),
        Raw::Text(s) => parse_flag(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("expected true or false, got `{s}`"))),
    }
}

/// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` in any case; an empty string is false
/// (an unset `{$VAR:}`).
pub fn parse_flag(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// The defaults of `#[serde(default = "…")]` that several modules share.
pub mod defaults {
    /// `true`.
    pub fn yes() -> bool {
        true
    }
}

/// A password or other secret setting: `Debug` prints `***`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Password(pub String);

impl Password {
    /// The secret itself, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty (no password).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct S {
        #[serde(deserialize_with = "number")]
        port: u16,
        #[serde(default, deserialize_with = "optional_number")]
        partition: Option<i32>,
        #[serde(default, deserialize_with = "flag")]
        tls: bool,
        password: Password,
    }

    #[test]
    fn numbers_and_flags_may_be_strings_and_passwords_stay_hidden() {
        let s: S = serde_json::from_value(serde_json::json!({
            "port": "5672", "partition": -1, "tls": "true", "password": "hunter22"
        }))
        .unwrap();
        assert_eq!((s.port, s.partition, s.tls), (5672, Some(-1), true));
        assert!(!format!("{s:?}").contains("hunter22"));
        assert_eq!(s.password.expose(), "hunter22");
        let bad = serde_json::from_value::<S>(serde_json::json!({"port": 70000, "password": ""}));
        assert!(bad.is_err());
    }
}
