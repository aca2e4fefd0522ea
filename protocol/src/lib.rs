//! pupa's wire protocol, shared by the guest, the host loader and the client.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
extern crate alloc;
