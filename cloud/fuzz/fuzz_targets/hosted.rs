//! Self-service request bodies (HOSTED.md §2–§3): account creation, sign-up, account update,
//! channel creation and update, each read as its handler reads it; the first byte picks the
//! body. See `connect_cloud::hosted::bodies` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    connect_cloud::hosted::bodies::exercise(pick, body);
});
