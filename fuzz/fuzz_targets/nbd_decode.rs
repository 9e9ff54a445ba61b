//! Fuzz the NBD decoders a client can reach: client flags, option headers and payloads (every
//! option number), request headers and request validation. None may panic; whatever decodes
//! must re-encode to the same bytes; whatever validates must be inside the export.

#![no_main]

#[allow(dead_code)]
#[path = "../../src/export/nbd/proto.rs"]
mod proto;

use libfuzzer_sys::fuzz_target;
use proto::*;

const OPTIONS: [u32; 13] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x8000_0001];

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = parse_client_flags([data[0], data[1], data[2], data[3]]);
    }

    // An option header followed by its payload, as the negotiation reads them.
    if data.len() >= OPTION_HEADER_LEN {
        let header: [u8; OPTION_HEADER_LEN] = data[..OPTION_HEADER_LEN].try_into().unwrap();
        if let Ok(h) = parse_option_header(&header) {
            if h.check_length().is_ok() {
                let rest = &data[OPTION_HEADER_LEN..];
                let payload = &rest[..rest.len().min(h.length as usize)];
                let _ = parse_option(h.option, payload);
            }
        }
    }

    // Every option decoder on the whole input; round trips for the structured ones.
    for opt in OPTIONS {
        match parse_option(opt, data) {
            Ok(ClientOption::Info { name, requests, .. }) => {
                assert_eq!(encode_info_payload(&name, &requests), data);
            }
            Ok(ClientOption::MetaContext { name, queries, .. }) => {
                let q: Vec<&str> = queries.iter().map(String::as_str).collect();
                assert_eq!(encode_meta_payload(&name, &q), data);
            }
            Ok(ClientOption::ExportName(name)) => assert_eq!(name.as_bytes(), data),
            Ok(_) | Err(_) => {}
        }
    }

    // Requests: every 28-byte window, validated against a session drawn from the input.
    let session = Session {
        size: data.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).unwrap_or(1 << 30),
        readonly: data.first().is_some_and(|b| b & 1 != 0),
        structured: data.first().is_some_and(|b| b & 2 != 0),
        base_allocation: data.first().is_some_and(|b| b & 4 != 0),
    };
    for chunk in data.chunks_exact(REQUEST_HEADER_LEN) {
        let raw: [u8; REQUEST_HEADER_LEN] = chunk.try_into().unwrap();
        // Also try the same bytes with a valid magic, so validation sees them.
        let mut fixed = raw;
        fixed[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        for bytes in [raw, fixed] {
            let Ok(req) = parse_request(&bytes) else { continue };
            assert_eq!(encode_request(&req), bytes);
            if validate_request(&req, &session).is_ok() {
                if matches!(req.command, CMD_READ | CMD_WRITE) {
                    assert!(req.length <= MAX_PAYLOAD);
                }
                if !matches!(req.command, CMD_FLUSH | CMD_DISC) {
                    assert!(req.offset.checked_add(req.length as u64).is_some_and(|e| e <= session.size));
                }
                if session.readonly {
                    assert!(!matches!(req.command, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES));
                }
                if req.command == CMD_BLOCK_STATUS {
                    assert!(session.structured && session.base_allocation && req.length > 0);
                }
            }
        }
    }

    // Client-side decoders too (test clients use them).
    let _ = parse_reply_header(data);
    if data.len() >= 20 {
        let _ = parse_option_reply_header(&data[..20].try_into().unwrap());
    }
});
