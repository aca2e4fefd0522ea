//! pupa host loader.

pub mod client;
pub mod demo;
pub mod profile;
pub mod receipts;
pub mod relay;
pub mod vm;
