//! `data_type: form`: checks that a form body is well formed before it is stored.
//!
//! `application/x-www-form-urlencoded` must be UTF-8 with valid percent-encoding;
//! `multipart/form-data` must name a boundary and parse to the end (via `multer`), with at
//! most [`MAX_FIELDS`] parts. The raw body is relayed untouched either way.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;

use super::api_error::ApiError;

/// Most fields or parts a form may have.
pub const MAX_FIELDS: usize = 1000;

fn malformed(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_form", detail)
}

/// Checks a form body against its declared content type.
pub async fn check(headers: &BTreeMap<String, String>, body: &Bytes) -> Result<(), ApiError> {
    let content_type = headers
        .get("content-type")
        .map(String::as_str)
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "multipart/form-data" => check_multipart(content_type, body.clone()).await,
        _ => check_urlencoded(body),
    }
}

fn check_urlencoded(body: &[u8]) -> Result<(), ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| malformed("the urlencoded form is not UTF-8"))?;
    let mut fields = 0;
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(malformed(format!(
                "the form has more than {MAX_FIELDS} fields"
            )));
        }
        for part in pair.splitn(2, '=') {
            let spaced = part.replace('+', " ");
            let bytes = spaced.as_bytes();
            let bad_escape = bytes.iter().enumerate().any(|(i, b)| {
                *b == b'%'
                    && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            });
            if bad_escape {
                return Err(malformed("the urlencoded form has an invalid %-escape"));
            }
            percent_encoding::percent_decode_str(&spaced)
                .decode_utf8()
                .map_err(|_| malformed("the urlencoded form decodes to invalid UTF-8"))?;
        }
    }
    Ok(())
}

async fn check_multipart(content_type: &str, body: Bytes) -> Result<(), ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| malformed("multipart/form-data needs a `boundary` parameter"))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts = 0;
    loop {
        match multipart.next_field().await {
            Ok(None) => return Ok(()),
            Ok(Some(mut field)) => {
                parts += 1;
                if parts > MAX_FIELDS {
                    return Err(malformed(format!(
                        "the form has more than {MAX_FIELDS} parts"
                    )));
                }
                while field
                    .chunk()
                    .await
                    .map_err(|e| malformed(format!("malformed multipart body: {e}")))?
                    .is_some()
                {}
            }
            Err(e) => return Err(malformed(format!("malformed multipart body: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> BTreeMap<String, String> {
        [("content-type".to_string(), ct.to_string())].into()
    }

    #[tokio::test]
    async fn urlencoded_forms() {
        let h = headers("application/x-www-form-urlencoded");
        assert!(
            check(&h, &Bytes::from_static(b"a=1&b=hello+world&c=%C3%A9"))
                .await
                .is_ok()
        );
        assert!(check(&h, &Bytes::from_static(b"a=%ZZ")).await.is_err());
        assert!(check(&h, &Bytes::from_static(b"a=%FF")).await.is_err());
        assert!(check(&h, &Bytes::from_static(b"\xff=1")).await.is_err());
    }

    #[tokio::test]
    async fn multipart_forms() {
        let h = headers("multipart/form-data; boundary=XyZ");
        let good = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n";
        assert!(check(&h, &Bytes::from(good)).await.is_ok());
        let truncated = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1";
        assert!(check(&h, &Bytes::from(truncated)).await.is_err());
        let no_boundary = headers("multipart/form-data");
        assert!(check(&no_boundary, &Bytes::from(good)).await.is_err());
    }
}
