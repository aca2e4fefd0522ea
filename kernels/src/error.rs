//! Errors returned by the kernel entry points (bad shapes, short buffers, unavailable ISA,
//! scratch that cannot be allocated, an expired deadline).

/// What was wrong with a kernel call. Every entry point validates its input and returns one of
/// these instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A matrix view would read past the end of its slice, or its size overflows `usize`.
    #[error("matrix {what}: {rows}x{cols} with strides ({rs},{cs}) needs {needed} elements, slice has {len}")]
    MatrixOutOfBounds {
        /// which operand
        what: &'static str,
        /// rows of the view
        rows: usize,
        /// columns of the view
        cols: usize,
        /// row stride
        rs: usize,
        /// column stride
        cs: usize,
        /// elements needed (saturating)
        needed: usize,
        /// elements available
        len: usize,
    },
    /// Inner dimensions of a product do not agree.
    #[error("shape mismatch: A is {m}x{ka}, B is {kb}x{n}")]
    ShapeMismatch {
        /// rows of A
        m: usize,
        /// columns of A
        ka: usize,
        /// rows of B
        kb: usize,
        /// columns of B
        n: usize,
    },
    /// An output or input buffer is too short for the requested shape.
    #[error("buffer {what} too short: needs {needed} elements, has {len}")]
    BufferTooShort {
        /// which buffer
        what: &'static str,
        /// elements needed
        needed: usize,
        /// elements available
        len: usize,
    },
    /// An attention shape is invalid (zero sizes, heads not a multiple of kv_heads, overflow).
    #[error("invalid attention shape: {0}")]
    BadAttentionShape(&'static str),
    /// The caller asked for an instruction set this CPU (or its OS) does not enable.
    #[error(
        "instruction set {requested:?} requested but this CPU supports only up to {available:?}"
    )]
    IsaUnavailable {
        /// what was asked for
        requested: crate::Isa,
        /// what [`crate::detect`] found
        available: crate::Isa,
    },
    /// The caller's `expired` check returned true (it is polled once per outer block); the
    /// output is incomplete and must not be used.
    #[error("deadline exceeded: the computation was stopped before it finished")]
    DeadlineExceeded,
    /// A scratch buffer could not be allocated.
    #[error("out of memory: kernel scratch of {bytes} bytes")]
    OutOfMemory {
        /// bytes asked for
        bytes: usize,
    },
}
