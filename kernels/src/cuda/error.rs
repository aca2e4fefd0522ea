//! Errors of the CUDA backend.

/// Why a CUDA kernel could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// libcuda (the NVIDIA driver library) could not be loaded: no driver on this machine.
    #[error("the NVIDIA driver library (libcuda) is not present on this machine")]
    NoDriver,
    /// libnvrtc from CUDA 13.x could not be loaded (it compiles the kernels at run time).
    #[error("libnvrtc (CUDA 13.2 or newer) is not present: install the CUDA 13 runtime compiler or put it on LD_LIBRARY_PATH")]
    NoNvrtc,
    /// A kernel file built ahead of time could not be used.
    #[error("cubin {path}: {why}")]
    BadCubin {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The driver sees no device with this ordinal.
    #[error("no CUDA device with ordinal {ordinal} ({count} present)")]
    NoDevice {
        /// Requested ordinal.
        ordinal: usize,
        /// Devices present.
        count: i32,
    },
    /// The kernels are built for sm_90a (Hopper) only.
    #[error(
        "device {name} is sm_{major}{minor}; these kernels need sm_90 (Hopper: H100/H200/GH200)"
    )]
    UnsupportedDevice {
        /// Device name.
        name: String,
        /// Compute capability, major.
        major: i32,
        /// Compute capability, minor.
        minor: i32,
    },
    /// A shape the kernels cannot run, with the reason.
    #[error("bad shape: {0}")]
    BadShape(String),
    /// A buffer is shorter than the shape needs.
    #[error("buffer {what} holds {len} elements, the shape needs {needed}")]
    BufferTooShort {
        /// Which buffer.
        what: &'static str,
        /// Elements the shape needs.
        needed: usize,
        /// Elements given.
        len: usize,
    },
    /// NVRTC rejected a kernel source (with its log).
    #[error("NVRTC failed to compile {kernel}: {log}")]
    Compile {
        /// Source file.
        kernel: &'static str,
        /// Compiler log or error.
        log: String,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    /// A cuBLAS call failed (the reference column of `pupa-bench --backend cuda`).
    #[error("cuBLAS: {0}")]
    Cublas(#[from] cudarc::cublas::result::CublasError),
}
