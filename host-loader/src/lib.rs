//! pupa host loader.
