//! Launch measurements and evidence verification.
