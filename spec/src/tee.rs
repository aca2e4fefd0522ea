//! The one TEE kind shared by the guest, the protocol, the host loader and the verifier.
