//! llama.cpp's process-wide backend: initialised once, on first use, with
//! its logs routed into `tracing`; and the compute devices it sees.

use std::ffi::CStr;
use std::sync::Once;

use llama_cpp_sys_2 as sys;

/// Initialises llama.cpp's backend once per process. Every handle that
/// reaches llama.cpp calls this first, so callers never have to.
pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        crate::log::route_to_tracing();
        // SAFETY: called once per process (guarded by `INIT`), before any
        // other llama.cpp call of this crate, as llama.h asks.
        unsafe { sys::llama_backend_init() };
    });
}

/// What kind of device llama.cpp computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceKind {
    /// The CPU.
    Cpu,
    /// A discrete GPU.
    Gpu,
    /// A GPU sharing the host's memory.
    IntegratedGpu,
    /// An accelerator that works beside the CPU (BLAS and the like).
    Accelerator,
    /// A kind this crate does not know.
    Other,
}

/// One compute device llama.cpp sees in this build and on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// ggml's name for it (`CPU`, `CUDA0`, `Vulkan0`).
    pub name: String,
    /// What it is, as its driver describes it.
    pub description: String,
    /// Its kind.
    pub kind: DeviceKind,
    /// Bytes of memory free, as the driver reports it.
    pub memory_free: usize,
    /// Bytes of memory in all.
    pub memory_total: usize,
}

impl Device {
    /// Whether layers can be offloaded to it (a GPU of either kind).
    #[must_use]
    pub fn is_gpu(&self) -> bool {
        matches!(self.kind, DeviceKind::Gpu | DeviceKind::IntegratedGpu)
    }
}

/// The devices llama.cpp sees, in its order.
#[must_use]
pub fn devices() -> Vec<Device> {
    init();
    // SAFETY: the backend is initialised; the count is a plain query.
    let count = unsafe { sys::ggml_backend_dev_count() };
    (0..count)
        .filter_map(|i| {
            // SAFETY: `i` is below the count just read; ggml owns the device
            // objects for the life of the process.
            let dev = unsafe { sys::ggml_backend_dev_get(i) };
            if dev.is_null() {
                return None;
            }
            let (mut free, mut total) = (0usize, 0usize);
            // SAFETY: `dev` is a live device; the getters return strings
            // owned by ggml (copied here at once) and fill the two sizes.
            let (name, description, kind) = unsafe {
                sys::ggml_backend_dev_memory(dev, &raw mut free, &raw mut total);
                (
                    owned(sys::ggml_backend_dev_name(dev)),
                    owned(sys::ggml_backend_dev_description(dev)),
                    sys::ggml_backend_dev_type(dev),
                )
            };
            let kind = match kind {
                sys::GGML_BACKEND_DEVICE_TYPE_CPU => DeviceKind::Cpu,
                sys::GGML_BACKEND_DEVICE_TYPE_GPU => DeviceKind::Gpu,
                sys::GGML_BACKEND_DEVICE_TYPE_IGPU => DeviceKind::IntegratedGpu,
                sys::GGML_BACKEND_DEVICE_TYPE_ACCEL => DeviceKind::Accelerator,
                _ => DeviceKind::Other,
            };
            Some(Device {
                name,
                description,
                kind,
                memory_free: free,
                memory_total: total,
            })
        })
        .collect()
}

/// Whether this build of llama.cpp can offload layers to a GPU (a GPU
/// backend was compiled in; a device may still be missing).
#[must_use]
pub fn supports_gpu_offload() -> bool {
    init();
    // SAFETY: a plain query of the build's capabilities.
    unsafe { sys::llama_supports_gpu_offload() }
}

/// Copies a C string that may be null.
///
/// # Safety
///
/// `text` is null or points to a NUL-terminated string valid for this call.
pub(crate) unsafe fn owned(text: *const std::ffi::c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: non-null, and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}
