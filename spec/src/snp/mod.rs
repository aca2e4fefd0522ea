//! AMD SEV-SNP structures.
