//! Fuzz the AK/SK verifier's pure parts a client reaches before any key is looked up: the
//! `Authorization` parser, the path and query canonicalizers, the ambiguity check and the date
//! parser. None may panic; a parsed header re-renders to one that parses the same; a query the
//! ambiguity check accepts canonicalizes the same however its pairs are ordered.

#![no_main]

#[allow(dead_code)]
#[path = "../../src/api/signature.rs"]
mod signature;

use libfuzzer_sys::fuzz_target;
use signature::*;

fuzz_target!(|data: &[u8]| {
    let _ = is_sdk_signature(data);
    if let Ok(h) = parse_authorization(data) {
        let again = format!(
            "SDK-HMAC-SHA256 Access={}, SignedHeaders={}, Signature={}",
            h.access_key,
            h.signed_headers.join(";"),
            hex(&h.signature)
        );
        assert_eq!(parse_authorization(again.as_bytes()).ok(), Some(h));
    }
    let _ = parse_date(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    let _ = canonical_uri(path);
    let canonical = canonical_query(query);
    if check_unambiguous(path, query).is_ok() {
        if let Some(q) = query {
            let mut pairs: Vec<&str> = q.split('&').collect();
            pairs.reverse();
            assert_eq!(canonical_query(Some(&pairs.join("&"))), canonical, "order changed the canonical query");
        }
    }
    let headers: [(&str, &str); 2] = [("host", "h"), ("x-sdk-date", "20261204T000000Z")];
    let lookup = |name: &str| -> Result<&[u8], SigError> {
        headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_bytes()).ok_or(SigError("missing header"))
    };
    let signed = vec!["host".to_string(), "x-sdk-date".to_string()];
    let _ = canonical_request("POST", path, query, &signed, lookup, data);
});
