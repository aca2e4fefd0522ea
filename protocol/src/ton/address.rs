//! Standard TON internal addresses (`addr_std` without anycast) in raw (`wc:hex`) and
//! user-friendly form (36 bytes: flags, workchain, hash, CRC16-XMODEM; base64 or
//! base64url; documented in the TON docs, "Smart contract addresses").

use alloc::string::String;
use alloc::vec::Vec;
use base64::Engine;
use core::fmt::Write;
use crc::{Crc, CRC_16_XMODEM};

use super::TonError;

const FLAG_BOUNCEABLE: u8 = 0x11;
const FLAG_NON_BOUNCEABLE: u8 = 0x51;
const FLAG_TESTNET: u8 = 0x80;

/// An `addr_std` internal address: workchain and 256-bit account id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgAddressInt {
    /// Workchain id: 0 basechain, -1 masterchain.
    pub workchain: i8,
    /// Account id (the hash of the contract's StateInit).
    pub hash: [u8; 32],
}

/// Flags carried by a user-friendly address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FriendlyFlags {
    /// `E…`/`k…` (bounceable) rather than `U…`/`0…`.
    pub bounceable: bool,
    /// Testnet-only address.
    pub testnet: bool,
}

impl MsgAddressInt {
    /// Raw form `workchain:64 lowercase hex`.
    pub fn to_raw(&self) -> String {
        let mut s = String::with_capacity(68);
        let _ = write!(s, "{}:", self.workchain);
        for b in self.hash {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Parses the raw form `workchain:hex64`.
    pub fn from_raw(s: &str) -> Result<Self, TonError> {
        let (wc, hex) = s.split_once(':').ok_or(TonError::BadAddress)?;
        let workchain: i8 = wc.parse().map_err(|_| TonError::BadAddress)?;
        if hex.len() != 64 {
            return Err(TonError::BadAddress);
        }
        let mut hash = [0u8; 32];
        for (i, out) in hash.iter_mut().enumerate() {
            *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or(TonError::BadAddress)?, 16)
                .map_err(|_| TonError::BadAddress)?;
        }
        Ok(MsgAddressInt { workchain, hash })
    }

    /// User-friendly base64url form.
    pub fn to_friendly(&self, flags: FriendlyFlags) -> String {
        let mut b = Vec::with_capacity(36);
        let mut tag = if flags.bounceable {
            FLAG_BOUNCEABLE
        } else {
            FLAG_NON_BOUNCEABLE
        };
        if flags.testnet {
            tag |= FLAG_TESTNET;
        }
        b.push(tag);
        b.push(self.workchain as u8);
        b.extend_from_slice(&self.hash);
        let crc = Crc::<u16>::new(&CRC_16_XMODEM).checksum(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        base64::engine::general_purpose::URL_SAFE.encode(&b)
    }

    /// Parses a user-friendly address (base64 or base64url), checking its CRC16.
    pub fn from_friendly(s: &str) -> Result<(Self, FriendlyFlags), TonError> {
        if s.len() != 48 {
            return Err(TonError::BadAddress);
        }
        let bytes = if s.contains(['-', '_']) {
            base64::engine::general_purpose::URL_SAFE.decode(s)
        } else {
            base64::engine::general_purpose::STANDARD.decode(s)
        }
        .map_err(|_| TonError::BadAddress)?;
        if bytes.len() != 36 {
            return Err(TonError::BadAddress);
        }
        let crc = Crc::<u16>::new(&CRC_16_XMODEM).checksum(&bytes[..34]);
        if crc.to_be_bytes() != bytes[34..36] {
            return Err(TonError::BadAddressChecksum);
        }
        let testnet = bytes[0] & FLAG_TESTNET != 0;
        let bounceable = match bytes[0] & !FLAG_TESTNET {
            FLAG_BOUNCEABLE => true,
            FLAG_NON_BOUNCEABLE => false,
            _ => return Err(TonError::BadAddress),
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[2..34]);
        Ok((
            MsgAddressInt {
                workchain: bytes[1] as i8,
                hash,
            },
            FriendlyFlags {
                bounceable,
                testnet,
            },
        ))
    }

    /// Parses either form.
    pub fn parse(s: &str) -> Result<Self, TonError> {
        if s.contains(':') {
            Self::from_raw(s)
        } else {
            Self::from_friendly(s).map(|(a, _)| a)
        }
    }
}
