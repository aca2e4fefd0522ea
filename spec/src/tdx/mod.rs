//! Intel TDX structures.

pub mod boot_config;
pub mod get_quote;
pub mod metadata;
pub mod report;
