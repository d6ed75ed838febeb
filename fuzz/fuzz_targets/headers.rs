//! Header rewriting on arbitrary request headers: whatever came in, what
//! goes to the app has no hop-by-hop header and one `X-Forwarded-For`.
#![no_main]

use berth_router::fuzzing::rewrite_request_headers;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let trusted = flags & 1 == 1;
    rewrite_request_headers(&mut headers, trusted);
    for hop in [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ] {
        assert!(!headers.contains_key(hop), "{hop} left in {headers:?}");
    }
    assert!(!headers.keys().any(|k| k.as_str().starts_with("proxy-")));
    assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
});
