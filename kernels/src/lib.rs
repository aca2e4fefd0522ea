//! pupa's compute kernels.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
