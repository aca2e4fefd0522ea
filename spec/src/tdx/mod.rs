//! Intel TDX structures.

pub mod boot_config;
pub mod metadata;
