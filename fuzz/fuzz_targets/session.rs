//! Fuzzes a whole session on the tiny test model: bytes in (control byte,
//! prompt, image), `Session::tokenize` and `Session::caption` out, through
//! mtmd's tokenizer, the vision encode and the text decoder. See
//! `src/session_check.rs`.
#![no_main]

// The prepare target's check, for its decoding limits.
#[path = "../src/check.rs"]
#[allow(dead_code)]
mod check;
#[path = "../src/session_check.rs"]
mod session_check;

use std::cell::RefCell;

thread_local! {
    static SESSION: RefCell<smolvlm::Session> = RefCell::new(
        session_check::model()
            .session()
            .unwrap_or_else(|e| panic!("no session of the tiny model: {e}")),
    );
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    SESSION.with_borrow_mut(|session| {
        session_check::check(session, data);
    });
});
