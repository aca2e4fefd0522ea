//! The CUDA sources, embedded in the binary and made self-contained for NVRTC.
//!
//! Build path (one, pinned): the `.cu` files are compiled at run time by NVRTC from CUDA 13.2
//! (cudarc feature `cuda-13020`) for `sm_90a`. The compile gates (kernels/cuda/check.sh) compile
//! the same files with nvcc 13.2 from the pinned PyPI wheels, so what is gated is what runs.

/// Headers the kernels include, by the name they are included with.
const HEADERS: [(&str, &str); 2] = [
    ("hopper.cuh", include_str!("../../cuda/hopper.cuh")),
    ("wgmma_gen.cuh", include_str!("../../cuda/wgmma_gen.cuh")),
];

/// The bf16 GEMM (`pupa_gemm_bf16_sm90a`).
pub const GEMM_CU: &str = include_str!("../../cuda/gemm_bf16_sm90a.cu");
/// The attention forward kernels (`pupa_attention_fwd_d{64,128}_sm90a`).
pub const ATTENTION_CU: &str = include_str!("../../cuda/attention_fwd_sm90a.cu");

/// NVRTC options: the architecture with its `a` features (wgmma, setmaxnreg), C++17, and no
/// fast-math (exp2f and the divisions keep their IEEE behaviour, as under nvcc -O3).
pub const NVRTC_OPTIONS: [&str; 2] = ["--gpu-architecture=sm_90a", "--std=c++17"];

/// `src` with each `#include "<header>"` of ours replaced by the header's text (once; later
/// includes of the same header become empty, as `#pragma once` would make them). NVRTC gets no
/// include path at run time, so the text must be self-contained. `None` names an unknown header.
pub fn expand_includes(src: &str) -> Result<String, String> {
    let mut out = String::with_capacity(src.len() + 64 * 1024);
    let mut done: Vec<&str> = Vec::new();
    for line in src.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("#include \"") {
            let name = rest.trim_end_matches('"');
            let (_, text) = HEADERS
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| format!("unknown header {name:?}"))?;
            if !done.contains(&name) {
                done.push(name);
                out.push_str(&expand_includes(text)?);
            }
        } else if t == "#pragma once" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}
