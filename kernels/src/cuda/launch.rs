//! The cudarc launcher: probes for the driver, compiles the kernels with NVRTC, builds the TMA
//! descriptors and launches.

use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::sync::Arc;

use cudarc::driver::sys;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};
use half::bf16;
use half::slice::HalfFloatSliceExt;

use super::model::{attention as am, gemm as gm};
use super::source::{expand_includes, ATTENTION_CU, GEMM_CU, NVRTC_OPTIONS};
use super::CudaError;
use crate::AttnShape;

/// Threads per CTA of every kernel: one producer and two consumer warpgroups.
const THREADS: u32 = 384;

/// Checks that the driver library (libcuda) and NVRTC can be loaded. cudarc panics on first use
/// of a missing library (`CudaContext::new` included), so this runs before anything else.
pub fn probe() -> Result<(), CudaError> {
    probe_driver()?;
    // SAFETY: only tries to dlopen the library under its usual names.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaError::NoNvrtc);
    }
    Ok(())
}

/// Checks that the driver library (libcuda) can be loaded: all [`CudaKernels::with_cubins`]
/// needs.
pub fn probe_driver() -> Result<(), CudaError> {
    // SAFETY: only tries to dlopen the library under its usual names.
    if !unsafe { sys::is_culib_present() } {
        return Err(CudaError::NoDriver);
    }
    Ok(())
}

/// The kernels built ahead of time for sm_90a, as `kernels/cuda/check.sh` builds them for
/// NVIDIA's R535 driver (`*.cu12.cubin` in its output): loaded with `cuModuleLoadData`, so
/// neither NVRTC nor the driver's PTX JIT runs.
pub struct Cubins {
    /// `gemm_bf16_sm90a.cubin`.
    pub gemm: Vec<u8>,
    /// `attention_fwd_sm90a.cubin`.
    pub attention: Vec<u8>,
}

/// The most bytes a cubin file may have (the kernels' are tens of KiB).
const MAX_CUBIN: u64 = 16 << 20;

impl Cubins {
    /// The file names [`Cubins::read_dir`] reads.
    pub const FILES: [&'static str; 2] = ["gemm_bf16_sm90a.cubin", "attention_fwd_sm90a.cubin"];

    /// Reads both cubins from `dir`; each must be an ELF file of at most 16 MiB.
    pub fn read_dir(dir: &std::path::Path) -> Result<Self, CudaError> {
        let read = |name: &str| -> Result<Vec<u8>, CudaError> {
            let path = dir.join(name);
            let bad = |why: String| CudaError::BadCubin {
                path: path.display().to_string(),
                why,
            };
            let len = std::fs::metadata(&path)
                .map_err(|e| bad(e.to_string()))?
                .len();
            if len > MAX_CUBIN {
                return Err(bad(format!("{len} bytes, more than {MAX_CUBIN}")));
            }
            let bytes = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
            if !bytes.starts_with(b"\x7fELF") {
                return Err(bad("not an ELF file".into()));
            }
            Ok(bytes)
        };
        Ok(Cubins {
            gemm: read(Self::FILES[0])?,
            attention: read(Self::FILES[1])?,
        })
    }
}

/// Compiles one source with NVRTC to PTX for sm_90a (needs only libnvrtc, no GPU).
pub(crate) fn compile(kernel: &'static str, src: &str) -> Result<Ptx, CudaError> {
    // SAFETY: only tries to dlopen libnvrtc.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaError::NoNvrtc);
    }
    let text = expand_includes(src).map_err(|log| CudaError::Compile { kernel, log })?;
    let opts = CompileOptions {
        options: NVRTC_OPTIONS.iter().map(|s| s.to_string()).collect(),
        name: Some(kernel.into()),
        ..Default::default()
    };
    compile_ptx_with_opts(text, opts).map_err(|e| CudaError::Compile {
        kernel,
        log: match e {
            CompileError::CompileError { nvrtc, log, .. } => {
                format!("{nvrtc:?}: {}", log.to_string_lossy())
            }
            other => format!("{other:?}"),
        },
    })
}

/// PTX of every kernel source as NVRTC produces it here: `(file, ptx)`. Lets a machine with
/// libnvrtc but no GPU check the run-time build path.
pub fn compile_all_ptx() -> Result<Vec<(&'static str, String)>, CudaError> {
    [
        ("gemm_bf16_sm90a.cu", GEMM_CU),
        ("attention_fwd_sm90a.cu", ATTENTION_CU),
    ]
    .into_iter()
    .map(|(name, src)| compile(name, src).map(|p| (name, p.to_src())))
    .collect()
}

/// A CUtensorMap passed by value as a `const __grid_constant__ TmaDesc` kernel parameter.
#[repr(transparent)]
#[derive(Clone, Copy)]
struct TmaDesc(sys::CUtensorMap);

// SAFETY: a plain 128-byte value with no pointers into host memory; the kernels take it by value.
unsafe impl DeviceRepr for TmaDesc {}

/// Encodes a bf16 tensor map with 128-byte swizzle and zero fill (CUDA Driver API
/// `cuTensorMapEncodeTiled`). `dims` innermost first; `strides` in bytes for dims 1.. .
fn tensor_map(
    ptr: sys::CUdeviceptr,
    dims: &[u64],
    strides: &[u64],
    boxes: &[u32],
) -> Result<TmaDesc, CudaError> {
    debug_assert!(dims.len() == boxes.len() && strides.len() + 1 == dims.len());
    let elem_strides = [1u32; 5];
    let mut map = MaybeUninit::<sys::CUtensorMap>::zeroed();
    // SAFETY: every pointer refers to a live array of `rank` (or rank - 1) elements; the driver
    // writes the 128-byte map and keeps no pointer to our arrays. The global address is a live
    // device allocation that outlives the launch (the caller holds its CudaSlice).
    unsafe {
        sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            dims.len() as u32,
            ptr as *mut c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            elem_strides.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
        .result()?;
        // SAFETY: initialised by the successful call above.
        Ok(TmaDesc(map.assume_init()))
    }
}

fn to_i32(what: &str, v: usize) -> Result<i32, CudaError> {
    i32::try_from(v).map_err(|_| CudaError::BadShape(format!("{what} = {v} exceeds i32")))
}

fn need(what: &'static str, needed: usize, len: usize) -> Result<(), CudaError> {
    if len < needed {
        Err(CudaError::BufferTooShort { what, needed, len })
    } else {
        Ok(())
    }
}

/// The compiled kernels on one Hopper GPU.
pub struct CudaKernels {
    pub(super) ctx: Arc<CudaContext>,
    pub(super) stream: Arc<CudaStream>,
    gemm: CudaFunction,
    attn_d64: CudaFunction,
    attn_d128: CudaFunction,
}

impl CudaKernels {
    /// Opens device `ordinal`: probes libcuda and libnvrtc, requires compute capability 9.0, and
    /// compiles the kernels with NVRTC (a few seconds, once).
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        probe()?;
        Self::open(ordinal, None)
    }

    /// Opens device `ordinal` with kernels built ahead of time: probes libcuda only, requires
    /// compute capability 9.0, loads the cubins (for a driver whose PTX JIT is older than
    /// CUDA 13, and a guest without NVRTC).
    pub fn with_cubins(ordinal: usize, cubins: &Cubins) -> Result<Self, CudaError> {
        probe_driver()?;
        Self::open(ordinal, Some(cubins))
    }

    fn open(ordinal: usize, cubins: Option<&Cubins>) -> Result<Self, CudaError> {
        let count = match CudaContext::device_count() {
            Ok(c) => c,
            // cuInit reports a driver without any device this way.
            Err(e) if e.0 == sys::cudaError_enum::CUDA_ERROR_NO_DEVICE => 0,
            Err(e) => return Err(e.into()),
        };
        if ordinal >= count.max(0) as usize {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal)?;
        let (major, minor) = ctx.compute_capability()?;
        if (major, minor) != (9, 0) {
            return Err(CudaError::UnsupportedDevice {
                name: ctx.name()?,
                major,
                minor,
            });
        }
        let load = |file: &'static str,
                    src: &str,
                    cubin: Option<&Vec<u8>>,
                    funcs: &[(&str, u32)]|
         -> Result<Vec<CudaFunction>, CudaError> {
            let image = match cubin {
                Some(c) => Ptx::from_binary(c.clone()),
                None => compile(file, src)?,
            };
            let module = ctx.load_module(image)?;
            funcs
                .iter()
                .map(|&(name, smem)| {
                    let f = module.load_function(name)?;
                    f.set_attribute(
                        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        smem as i32,
                    )?;
                    Ok(f)
                })
                .collect()
        };
        let mut g = load(
            "gemm_bf16_sm90a.cu",
            GEMM_CU,
            cubins.map(|c| &c.gemm),
            &[("pupa_gemm_bf16_sm90a", gm::SMEM_BYTES)],
        )?;
        let mut a = load(
            "attention_fwd_sm90a.cu",
            ATTENTION_CU,
            cubins.map(|c| &c.attention),
            &[
                ("pupa_attention_fwd_d64_sm90a", am::smem_bytes(64)),
                ("pupa_attention_fwd_d128_sm90a", am::smem_bytes(128)),
            ],
        )?;
        let (attn_d128, attn_d64, gemm) = (a.remove(1), a.remove(0), g.remove(0));
        let stream = ctx.default_stream();
        Ok(CudaKernels {
            ctx,
            stream,
            gemm,
            attn_d64,
            attn_d128,
        })
    }

    /// The device's name.
    pub fn device_name(&self) -> Result<String, CudaError> {
        Ok(self.ctx.name()?)
    }

    /// The stream every launch goes to (for events, timing and copies).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Enqueues C (m x n, f32) = A (m x k) · Bᵀ, with A and B bf16 row-major and B given as n x k.
    /// Needs k a multiple of 8 (TMA row pitch is a multiple of 16 bytes). Asynchronous.
    pub fn gemm(
        &self,
        a: &CudaSlice<u16>,
        b_nk: &CudaSlice<u16>,
        c: &mut CudaSlice<f32>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<(), CudaError> {
        if m == 0 || n == 0 || k == 0 || !k.is_multiple_of(8) {
            return Err(CudaError::BadShape(format!(
                "gemm needs m, n, k > 0 and k % 8 == 0 (got {m} x {n} x {k})"
            )));
        }
        need(
            "a",
            m.checked_mul(k)
                .ok_or_else(|| CudaError::BadShape("m * k overflows".into()))?,
            a.len(),
        )?;
        need(
            "b",
            n.checked_mul(k)
                .ok_or_else(|| CudaError::BadShape("n * k overflows".into()))?,
            b_nk.len(),
        )?;
        need(
            "c",
            m.checked_mul(n)
                .ok_or_else(|| CudaError::BadShape("m * n overflows".into()))?,
            c.len(),
        )?;
        let (mi, ni, ki) = (to_i32("m", m)?, to_i32("n", n)?, to_i32("k", k)?);
        let grid_y = m.div_ceil(gm::BM);
        if grid_y > 65535 {
            return Err(CudaError::BadShape(format!(
                "m = {m} needs more than 65535 row tiles"
            )));
        }
        let (pa, _ga) = a.device_ptr(&self.stream);
        let (pb, _gb) = b_nk.device_ptr(&self.stream);
        let ta = tensor_map(
            pa,
            &[k as u64, m as u64],
            &[2 * k as u64],
            &[gm::BK as u32, gm::BM as u32],
        )?;
        let tb = tensor_map(
            pb,
            &[k as u64, n as u64],
            &[2 * k as u64],
            &[gm::BK as u32, gm::BN as u32],
        )?;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(gm::BN) as u32, grid_y as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: gm::SMEM_BYTES,
        };
        let mut launch = self.stream.launch_builder(&self.gemm);
        launch.arg(&ta).arg(&tb).arg(c).arg(&mi).arg(&ni).arg(&ki);
        // SAFETY: the argument list matches `pupa_gemm_bf16_sm90a(TmaDesc, TmaDesc, float*, int,
        // int, int)`; the tensor maps describe live allocations checked above to hold m x k and
        // n x k elements, and the kernel writes only c[0 .. m*n).
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }

    /// Enqueues attention forward with the layouts and conventions of [`crate::attention`]
    /// (Q, out `[seq_q][heads][dim]`, K, V `[seq_k][kv_heads][dim]`, bf16 inputs, f32 output,
    /// scale 1/√dim, bottom-right causal mask). Head dims 64 and 128. Asynchronous.
    pub fn attention(
        &self,
        q: &CudaSlice<u16>,
        k: &CudaSlice<u16>,
        v: &CudaSlice<u16>,
        out: &mut CudaSlice<f32>,
        shape: &AttnShape,
    ) -> Result<(), CudaError> {
        let s = *shape;
        if s.dim != 64 && s.dim != 128 {
            return Err(CudaError::BadShape(format!(
                "head dim {} (the CUDA kernels take 64 or 128)",
                s.dim
            )));
        }
        s.validate(q.len(), k.len(), v.len(), out.len(), None)
            .map_err(|e| CudaError::BadShape(e.to_string()))?;
        if s.seq_q == 0 {
            return Ok(());
        }
        if s.seq_k == 0 {
            self.stream.memset_zeros(out)?;
            return Ok(());
        }
        let grid_x = s.seq_q.div_ceil(am::BM);
        if s.heads > 65535 {
            return Err(CudaError::BadShape(format!(
                "{} heads exceed the grid's 65535",
                s.heads
            )));
        }
        let d = s.dim as u64;
        let (pq, _gq) = q.device_ptr(&self.stream);
        let (pk, _gk) = k.device_ptr(&self.stream);
        let (pv, _gv) = v.device_ptr(&self.stream);
        let boxes = [64u32, 1, am::BM as u32];
        let tq = tensor_map(
            pq,
            &[d, s.heads as u64, s.seq_q as u64],
            &[2 * d, 2 * d * s.heads as u64],
            &boxes,
        )?;
        let kv_dims = [d, s.kv_heads as u64, s.seq_k as u64];
        let kv_strides = [2 * d, 2 * d * s.kv_heads as u64];
        let boxes = [64u32, 1, am::BKV as u32];
        let tk = tensor_map(pk, &kv_dims, &kv_strides, &boxes)?;
        let tv = tensor_map(pv, &kv_dims, &kv_strides, &boxes)?;
        let (h, hkv, sq, sk) = (
            to_i32("heads", s.heads)?,
            to_i32("kv_heads", s.kv_heads)?,
            to_i32("seq_q", s.seq_q)?,
            to_i32("seq_k", s.seq_k)?,
        );
        let scale_log2 = (1.0 / (s.dim as f32).sqrt()) * core::f32::consts::LOG2_E;
        let causal = i32::from(s.causal);
        let func = if s.dim == 64 {
            &self.attn_d64
        } else {
            &self.attn_d128
        };
        let cfg = LaunchConfig {
            grid_dim: (grid_x as u32, s.heads as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: am::smem_bytes(s.dim),
        };
        let mut launch = self.stream.launch_builder(func);
        launch
            .arg(&tq)
            .arg(&tk)
            .arg(&tv)
            .arg(out)
            .arg(&h)
            .arg(&hkv)
            .arg(&sq)
            .arg(&sk)
            .arg(&scale_log2)
            .arg(&causal);
        // SAFETY: the argument list matches `pupa_attention_fwd_d{64,128}_sm90a(TmaDesc x3, float*,
        // int, int, int, int, float, int)`; the maps describe allocations validated above and the
        // kernel writes only out[0 .. seq_q*heads*dim).
        unsafe { launch.launch(cfg) }?;
        Ok(())
    }

    /// [`Self::gemm`] from host memory: uploads, runs, waits and downloads.
    pub fn gemm_host(
        &self,
        a: &[bf16],
        b_nk: &[bf16],
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<Vec<f32>, CudaError> {
        if m == 0 || n == 0 || k == 0 || !k.is_multiple_of(8) {
            return Err(CudaError::BadShape(format!(
                "gemm needs m, n, k > 0 and k % 8 == 0 (got {m} x {n} x {k})"
            )));
        }
        let da = self.stream.clone_htod(a.reinterpret_cast())?;
        let db = self.stream.clone_htod(b_nk.reinterpret_cast())?;
        // Poisoned with NaN so that an element the kernel fails to write cannot pass a check.
        let mut dc = self
            .stream
            .clone_htod(&vec![f32::NAN; m.saturating_mul(n)])?;
        self.gemm(&da, &db, &mut dc, m, n, k)?;
        Ok(self.stream.clone_dtoh(&dc)?)
    }

    /// [`Self::attention`] from host memory: uploads, runs, waits and downloads.
    pub fn attention_host(
        &self,
        q: &[bf16],
        k: &[bf16],
        v: &[bf16],
        shape: &AttnShape,
    ) -> Result<Vec<f32>, CudaError> {
        let n = shape
            .seq_q
            .saturating_mul(shape.heads)
            .saturating_mul(shape.dim);
        shape
            .validate(q.len(), k.len(), v.len(), n, None)
            .map_err(|e| CudaError::BadShape(e.to_string()))?;
        if n == 0 || q.is_empty() || k.is_empty() {
            return Ok(vec![0.0; n]);
        }
        let (dq, dk, dv) = (
            self.stream.clone_htod(q.reinterpret_cast())?,
            self.stream.clone_htod(k.reinterpret_cast())?,
            self.stream.clone_htod(v.reinterpret_cast())?,
        );
        let mut out = self.stream.clone_htod(&vec![f32::NAN; n])?;
        self.attention(&dq, &dk, &dv, &mut out, shape)?;
        Ok(self.stream.clone_dtoh(&out)?)
    }
}
