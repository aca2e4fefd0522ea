//! The pupa guest.
#![cfg_attr(not(test), no_std)]
