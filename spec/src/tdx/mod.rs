//! Intel TDX structures.

pub mod boot_config;
