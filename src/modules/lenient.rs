//! Serde helpers for connection settings written by hand or through `{$VAR}` substitution.
//!
//! Substitution turns `"port": "{$PORT:5432}"` into the string `"5432"`, so numbers and flags
//! are accepted either as JSON values or as strings. Nothing here touches the network.

use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A number written as a JSON number or as a string of digits.
pub fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + TryFrom<u64>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Number(n) => T::try_from(n)
            .map_err(|_| serde::de::Error::custom(format!("the number {n} is out of range"))),
        Raw::Text(s) => s.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("expected a number, got the string `{s}`"))
        }),
    }
}

/// Like [`number`], for an optional key (`null` or absent: `None`).
pub fn optional_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + TryFrom<u64>,
{
    #[derive(Deserialize)]
    struct Wrap<T: FromStr + TryFrom<u64>>(#[serde(deserialize_with = "number")] T);
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

/// `true`/`false`, `1`/`0`, `yes`/`no` in any case.
pub fn parse_flag(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct S {
        #[serde(deserialize_with = "number")]
        port: u16,
        #[serde(default, deserialize_with = "flag")]
        tls: bool,
    }

    #[test]
    fn numbers_and_flags_may_be_strings() {
        let s: S =
            serde_json::from_value(serde_json::json!({"port": "5432", "tls": "true"})).unwrap();
        assert_eq!((s.port, s.tls), (5432, true));
        let s: S = serde_json::from_value(serde_json::json!({"port": 3306, "tls": false})).unwrap();
        assert_eq!((s.port, s.tls), (3306, false));
        for bad in [
            serde_json::json!({"port": 70000}),
            serde_json::json!({"port": "x"}),
            serde_json::json!({"port": 1, "tls": "maybe"}),
        ] {
            assert!(serde_json::from_value::<S>(bad).is_err());
        }
    }
}
