//! Build and inspect pupa firmware images.
