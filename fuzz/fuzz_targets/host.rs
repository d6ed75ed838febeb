//! Host normalisation never panics and is idempotent: a normalised host
//! looks itself up.
#![no_main]

use berth_router::fuzzing::normalize_host;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let once = normalize_host(raw);
    assert_eq!(normalize_host(&once), once, "normalising {raw:?} twice changed it");
    assert!(!once.bytes().any(|b| b.is_ascii_uppercase()));
});
