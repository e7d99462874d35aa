//! Limits on JSON bodies: valid syntax, nesting depth ≤ 50, strings ≤ 1 MiB.
//!
//! Checked without building a document: serde validates the syntax, then one pass over the
//! bytes measures depth and string lengths.

use serde::de::IgnoredAny;

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 50;
/// Longest string accepted, in bytes as written.
pub const MAX_STRING_BYTES: usize = 1024 * 1024;

/// Why a JSON body is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonProblem {
    /// Not JSON.
    #[error("the body is not valid JSON: {0}")]
    Invalid(String),
    /// Nested too deep.
    #[error("the JSON body is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A string is too long.
    #[error("the JSON body has a string longer than {MAX_STRING_BYTES} bytes")]
    StringTooLong,
}

/// Checks a JSON body against the limits.
pub fn check(body: &[u8]) -> Result<(), JsonProblem> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut string_len = 0usize;
    for &b in body {
        if in_string {
            string_len += 1;
            if string_len > MAX_STRING_BYTES {
                return Err(JsonProblem::StringTooLong);
            }
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_len = 0;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(JsonProblem::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    serde_json::from_slice::<IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| JsonProblem::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(check(br#"{"a":[1,{"b":"x\"]]]"}]}"#), Ok(()));
        assert!(matches!(check(b"{nope"), Err(JsonProblem::Invalid(_))));
        assert!(matches!(check(b""), Err(JsonProblem::Invalid(_))));
        let deep = "[".repeat(51) + &"]".repeat(51);
        assert_eq!(check(deep.as_bytes()), Err(JsonProblem::TooDeep));
        let ok = "[".repeat(50) + &"]".repeat(50);
        assert_eq!(check(ok.as_bytes()), Ok(()));
        let long = format!("\"{}\"", "a".repeat(MAX_STRING_BYTES + 1));
        assert_eq!(check(long.as_bytes()), Err(JsonProblem::StringTooLong));
    }
}
