//! The HTTP/2 frame follower of the flood budget on arbitrary client
//! bytes: never panics, and sees the same frames however the bytes are
//! split into reads.
#![no_main]

use berth_router::fuzzing::http2_frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let whole = http2_frames([rest]);
    // Reads of `split + 1` bytes (1 to 256), as a socket might hand them.
    let pieces = http2_frames(rest.chunks(usize::from(split) + 1));
    assert_eq!(whole, pieces);
    for f in &whole {
        assert!(f.content <= f.len, "{f:?}");
        assert!(f.stream < 1 << 31, "{f:?}");
    }
});
