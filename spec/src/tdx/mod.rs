//! Intel TDX structures.

pub mod boot_config;
pub mod metadata;
pub mod report;
