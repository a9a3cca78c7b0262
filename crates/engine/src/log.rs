//! llama.cpp's and mtmd's logs, routed into `tracing` under the target
//! `llama_cpp`: silent unless the application installs a subscriber.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};

use llama_cpp_sys_2 as sys;

/// The target every native log line is emitted under.
pub(crate) const TARGET: &str = "llama_cpp";

thread_local! {
    /// A line llama.cpp has not finished yet (it logs some lines in pieces,
    /// the later ones at level `CONT`), with the level it began at.
    static PENDING: RefCell<(sys::ggml_log_level, String)> =
        const { RefCell::new((sys::GGML_LOG_LEVEL_INFO, String::new())) };
}

/// Installs [`log_line`] for llama.cpp (ggml included) and mtmd (clip included).
pub(crate) fn route_to_tracing() {
    // SAFETY: `log_line` has the signature of `ggml_log_callback`, never
    // unwinds, and uses no user data (null is allowed). Both setters only
    // store the pointer for later logging calls.
    unsafe {
        sys::llama_log_set(Some(log_line), std::ptr::null_mut());
        sys::mtmd_helper_log_set(Some(log_line), std::ptr::null_mut());
    }
}

unsafe extern "C" fn log_line(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string that stays valid for
    // the duration of this call; it is copied before the call returns.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    // A panic must not unwind into C; a lost log line is the worst outcome.
    let _ = std::panic::catch_unwind(|| {
        PENDING.with(|pending| {
            let Ok(mut pending) = pending.try_borrow_mut() else {
                return;
            };
            if level != sys::GGML_LOG_LEVEL_CONT {
                if !pending.1.is_empty() {
                    let line = std::mem::take(&mut pending.1);
                    emit(pending.0, &line);
                }
                pending.0 = level;
            }
            pending.1.push_str(&text);
            while let Some(end) = pending.1.find('\n') {
                let line: String = pending.1.drain(..=end).collect();
                emit(pending.0, line.trim_end());
            }
        });
    });
}

fn emit(level: sys::ggml_log_level, line: &str) {
    if line.is_empty() {
        return;
    }
    match level {
        sys::GGML_LOG_LEVEL_ERROR => tracing::error!(target: TARGET, "{line}"),
        sys::GGML_LOG_LEVEL_WARN => tracing::warn!(target: TARGET, "{line}"),
        sys::GGML_LOG_LEVEL_INFO => tracing::info!(target: TARGET, "{line}"),
        _ => tracing::debug!(target: TARGET, "{line}"),
    }
}
