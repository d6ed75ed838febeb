//! Any text given as a standalone router file is either refused with a
//! message or yields a configuration whose route table and settings build.
#![no_main]

use std::path::Path;

use berth_router::standalone;
use berth_router::RouterConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match standalone::parse_str(text, Path::new("/nonexistent")) {
        Ok(config) => {
            let table = config.to_route_table(1);
            assert_eq!(table.apps.len(), config.apps.len());
            let _ = config.router_config(RouterConfig::default());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
