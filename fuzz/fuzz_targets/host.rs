//! Host normalisation never panics, always lowercases, and strips the port
//! exactly where the `http` crate's authority parser says the host ends, so
//! the router never routes a host other than the one the client named.
#![no_main]

use berth_router::fuzzing::normalize_host;
use http::uri::Authority;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let normalized = normalize_host(raw);
    assert!(!normalized.bytes().any(|b| b.is_ascii_uppercase()));
    // A Host header has no user info; the authority parser allows it.
    if raw.contains('@') {
        return;
    }
    // Nor a port that is not a number (the parser takes any text there).
    let Ok(authority) = raw.parse::<Authority>() else {
        return;
    };
    let rest = raw.get(authority.host().len()..).unwrap_or("x");
    let port = rest.strip_prefix(':').unwrap_or(rest);
    if rest.is_empty() || (rest.len() > 1 && port.bytes().all(|b| b.is_ascii_digit())) {
        assert_eq!(
            normalize_host(authority.host()),
            normalized,
            "{raw:?}: the port was not stripped where the host ends"
        );
    }
});
