//! What the testkit's llama.cpp tests share.

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::{send_logs_to_tracing, LogOptions};

/// llama.cpp's backend, which may be initialised only once per process.
/// llama.cpp and mtmd log every load and image slice to stderr; they are
/// silenced unless `SMOLVLM_TESTKIT_LOGS` is set to debug a failing load.
pub fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        if std::env::var_os("SMOLVLM_TESTKIT_LOGS").is_none() {
            send_logs_to_tracing(LogOptions::default().with_logs_enabled(false));
        }
        LlamaBackend::init().expect("llama backend init")
    })
}
