//! pupa host loader.

pub mod profile;
pub mod receipts;
