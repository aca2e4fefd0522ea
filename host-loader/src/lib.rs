//! pupa host loader.

pub mod receipts;
