//! Intel TDX structures.
