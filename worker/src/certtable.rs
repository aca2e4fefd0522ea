//! The SEV-SNP certificate table that configfs-tsm's `auxblob` carries when `provider` is
//! `sev_guest` (Documentation/ABI/testing/configfs-tsm, "auxblob": the `cert_table` of the
//! SEV-ES GHCB Standardization v2.03, §4.1.8.1 MSG_REPORT_REQ).
//!
//! Layout: entries of 24 bytes — a GUID (16 bytes, in the byte order of its text form, as
//! virtee/sev and the hypervisors that fill the table write it), the certificate's offset from
//! the start of the table (u32 LE) and its length (u32 LE) — ended by an all-zero entry; the
//! certificates follow. Every offset and length is checked against the blob.

/// GUID of the VCEK entry (GHCB spec §4.1.8.1): `63da758d-e664-4564-adc5-f4b93be8accd`.
pub const VCEK_GUID: [u8; 16] = [
    0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd,
];
/// GUID of the VLEK entry: `a8074bc2-a25a-483e-aae6-39c045a0b8a1`.
pub const VLEK_GUID: [u8; 16] = [
    0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1,
];
/// Bytes of one table entry.
pub const ENTRY_LEN: usize = 24;
/// Most entries accepted (VCEK/VLEK, ASK, ARK, CRL and a few vendor ones fit easily).
pub const MAX_ENTRIES: usize = 64;

/// Why a certificate table is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertTableError {
    /// The blob ends inside an entry or before the terminating all-zero entry.
    #[error("SNP certificate table: no terminating all-zero entry within {len} bytes")]
    Unterminated {
        /// Bytes of the blob.
        len: usize,
    },
    /// More entries than [`MAX_ENTRIES`].
    #[error("SNP certificate table: more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// An entry points outside the blob, or into the table itself.
    #[error(
        "SNP certificate table: entry {index} (GUID {guid}) spans {offset}+{length}, outside \
         the certificate area {table_end}..{len}"
    )]
    OutOfBounds {
        /// Entry index.
        index: usize,
        /// The entry's GUID, text form.
        guid: String,
        /// Its offset.
        offset: u32,
        /// Its length.
        length: u32,
        /// Where the table (with its terminator) ends.
        table_end: usize,
        /// Bytes of the blob.
        len: usize,
    },
    /// A GUID appears twice.
    #[error("SNP certificate table: GUID {0} appears more than once")]
    Duplicate(String),
}

/// One certificate of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertEntry<'a> {
    /// The entry's GUID.
    pub guid: [u8; 16],
    /// The certificate bytes.
    pub cert: &'a [u8],
}

/// The text form of a GUID (`8-4-4-4-12` lowercase hex).
pub fn guid_text(g: &[u8; 16]) -> String {
    let h =
        |r: core::ops::Range<usize>| g[r].iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// Parses a certificate table (the whole `auxblob`). An empty blob is an empty table.
pub fn parse(blob: &[u8]) -> Result<Vec<CertEntry<'_>>, CertTableError> {
    if blob.is_empty() {
        return Ok(Vec::new());
    }
    let mut raw = Vec::new();
    let mut at = 0;
    loop {
        let Some(e) = blob.get(at..at + ENTRY_LEN) else {
            return Err(CertTableError::Unterminated { len: blob.len() });
        };
        at += ENTRY_LEN;
        if e.iter().all(|&b| b == 0) {
            break;
        }
        if raw.len() == MAX_ENTRIES {
            return Err(CertTableError::TooManyEntries);
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&e[..16]);
        raw.push((guid, u32_at(e, 16), u32_at(e, 20)));
    }
    let table_end = at;
    let mut out: Vec<CertEntry<'_>> = Vec::with_capacity(raw.len());
    for (index, (guid, offset, length)) in raw.into_iter().enumerate() {
        let start = offset as usize;
        let end = start.checked_add(length as usize);
        let cert = match end {
            Some(end) if start >= table_end && end <= blob.len() => &blob[start..end],
            _ => {
                return Err(CertTableError::OutOfBounds {
                    index,
                    guid: guid_text(&guid),
                    offset,
                    length,
                    table_end,
                    len: blob.len(),
                })
            }
        };
        if out.iter().any(|c| c.guid == guid) {
            return Err(CertTableError::Duplicate(guid_text(&guid)));
        }
        out.push(CertEntry { guid, cert });
    }
    Ok(out)
}

/// Builds a certificate table from `(guid, cert)` pairs (tests and tools).
pub fn build(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
    let table_len = (entries.len() + 1) * ENTRY_LEN;
    let mut head = Vec::with_capacity(table_len);
    let mut body = Vec::new();
    for (guid, cert) in entries {
        head.extend_from_slice(guid);
        head.extend_from_slice(&((table_len + body.len()) as u32).to_le_bytes());
        head.extend_from_slice(&(cert.len() as u32).to_le_bytes());
        body.extend_from_slice(cert);
    }
    head.resize(table_len, 0);
    head.extend_from_slice(&body);
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_guid_text() {
        assert_eq!(
            guid_text(&VCEK_GUID),
            "63da758d-e664-4564-adc5-f4b93be8accd"
        );
        assert_eq!(
            guid_text(&VLEK_GUID),
            "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        );
        let t = build(&[(VLEK_GUID, b"vlek"), (VCEK_GUID, b"vcek-der")]);
        let e = parse(&t).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].cert, b"vcek-der");
        assert!(parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn malformed_tables_are_refused() {
        let t = build(&[(VCEK_GUID, b"vcek-der")]);
        assert!(matches!(
            parse(&t[..30]),
            Err(CertTableError::Unterminated { .. })
        ));
        assert!(matches!(
            parse(&t[..t.len() - 1]),
            Err(CertTableError::OutOfBounds { index: 0, .. })
        ));
        let mut bad = t.clone();
        bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&bad),
            Err(CertTableError::OutOfBounds { .. })
        ));
        // Pointing into the table itself.
        let mut bad = t;
        bad[16..20].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            parse(&bad),
            Err(CertTableError::OutOfBounds { .. })
        ));
        let dup = build(&[(VCEK_GUID, b"a"), (VCEK_GUID, b"b")]);
        assert!(matches!(parse(&dup), Err(CertTableError::Duplicate(_))));
    }
}
