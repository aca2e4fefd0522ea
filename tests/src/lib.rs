//! Helpers for pupa end-to-end tests.
