//! Receipts (signed by the guest) and vouchers (signed by the client), as TON cells.
//!
//! Each signature is Ed25519 (RFC 8032) over the 32-byte representation hash of the
//! signed cell, which is exactly what TVM's `CHKSIGNU` checks on chain. Domain separation:
//! every signed cell starts with a 32-bit tag naming its purpose ("pupr" / "pupv"), then
//! the network's global id and the payment contract's address, so one signature is good
//! for exactly one purpose on exactly one contract of one network. Keys used for vouchers
//! should be dedicated keys, not wallet keys.
//!
//! ```text
//! // The guest's receipt: running totals for one (guest, client) pair.
//! pupa_receipt#70757072 network_id:int32 contract:MsgAddressInt
//!     seq:uint64 units:uint64 price:Coins
//!     keys:^[ guest_key:bits256 client_key:bits256 last_job:bits256 ]
//!   = PupaReceipt;
//! // The client's voucher: the most it lets this guest claim, cumulatively.
//! pupa_voucher#70757076 network_id:int32 contract:MsgAddressInt
//!     client_key:bits256 guest_key:bits256 cap:Coins
//!   = PupaVoucher;
//! // The client's designation of who may withdraw its deposit (first deposit only).
//! pupa_owner#7075706f network_id:int32 contract:MsgAddressInt owner:MsgAddressInt
//!   = PupaOwner;
//! signed$_ {X:Type} signature:bits512 data:^X = Signed X;
//! payout#70757061 query_id:uint64 receipt:^(Signed PupaReceipt)
//!     voucher:^(Signed PupaVoucher) = PayoutMsg;
//! ```

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::address::MsgAddressInt;
use super::builder::{CellBuilder, CellSlice};
use super::cell::Cell;
use super::TonError;

/// Tag of a receipt cell: ASCII "pupr".
pub const RECEIPT_TAG: u32 = 0x7075_7072;
/// Tag of a voucher cell: ASCII "pupv".
pub const VOUCHER_TAG: u32 = 0x7075_7076;
/// Tag of an owner proof: ASCII "pupo".
pub const OWNER_TAG: u32 = 0x7075_706f;
/// Opcode of a deposit message: ASCII "pupd".
pub const OP_DEPOSIT: u32 = 0x7075_7064;
/// Opcode of a payout message: ASCII "pupa".
pub const OP_PAYOUT: u32 = 0x7075_7061;
/// TON mainnet global id.
pub const MAINNET_ID: i32 = -239;
/// TON testnet global id.
pub const TESTNET_ID: i32 = -3;

/// Where a signature is meant to be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Network global id (-239 mainnet, -3 testnet).
    pub network_id: i32,
    /// The payment contract.
    pub contract: MsgAddressInt,
}

/// A guest-signed statement of the running totals it has earned from one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Network and payment contract this receipt is for.
    pub domain: Domain,
    /// The guest's Ed25519 receipt key.
    pub guest_key: [u8; 32],
    /// The client's Ed25519 voucher key.
    pub client_key: [u8; 32],
    /// Rises by at least one with every receipt for this (guest, client).
    pub seq: u64,
    /// Cumulative work units for this client.
    pub units: u64,
    /// Cumulative price in nanotons for this client.
    pub price: u128,
    /// Hash of the last job these totals include.
    pub last_job: [u8; 32],
}

/// A client-signed cap on what one guest may claim from it, cumulatively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Voucher {
    /// Network and payment contract this voucher is for.
    pub domain: Domain,
    /// The client's Ed25519 key (the deposit's owner key).
    pub client_key: [u8; 32],
    /// The guest allowed to claim.
    pub guest_key: [u8; 32],
    /// Largest cumulative price in nanotons the guest may claim.
    pub cap: u128,
}

fn store_domain(b: &mut CellBuilder, tag: u32, d: &Domain) -> Result<(), TonError> {
    b.store_uint(u128::from(tag), 32)?;
    b.store_int(i128::from(d.network_id), 32)?;
    b.store_address(&d.contract)?;
    Ok(())
}

fn load_domain(s: &mut CellSlice<'_>, tag: u32) -> Result<Domain, TonError> {
    if s.load_uint(32)? != u128::from(tag) {
        return Err(TonError::WrongTag);
    }
    let network_id = s.load_int(32)? as i32;
    let contract = s.load_address()?;
    Ok(Domain {
        network_id,
        contract,
    })
}

impl Receipt {
    /// The receipt cell (schema in the module docs).
    pub fn to_cell(&self) -> Result<Cell, TonError> {
        let mut keys = CellBuilder::new();
        keys.store_bytes(&self.guest_key)?
            .store_bytes(&self.client_key)?
            .store_bytes(&self.last_job)?;
        let mut b = CellBuilder::new();
        store_domain(&mut b, RECEIPT_TAG, &self.domain)?;
        b.store_uint(u128::from(self.seq), 64)?
            .store_uint(u128::from(self.units), 64)?
            .store_coins(self.price)?
            .store_ref(keys.build()?)?;
        b.build()
    }

    /// Parses a receipt cell strictly (no trailing bits or references).
    pub fn from_cell(c: &Cell) -> Result<Self, TonError> {
        let mut s = CellSlice::new(c);
        let domain = load_domain(&mut s, RECEIPT_TAG)?;
        let seq = s.load_uint(64)? as u64;
        let units = s.load_uint(64)? as u64;
        let price = s.load_coins()?;
        let keys = s.load_ref()?;
        s.end()?;
        let mut k = CellSlice::new(keys);
        let guest_key = k.load_bytes::<32>()?;
        let client_key = k.load_bytes::<32>()?;
        let last_job = k.load_bytes::<32>()?;
        k.end()?;
        Ok(Receipt {
            domain,
            guest_key,
            client_key,
            seq,
            units,
            price,
            last_job,
        })
    }

    /// The 32 bytes the guest signs: the cell's representation hash.
    pub fn signing_hash(&self) -> Result<[u8; 32], TonError> {
        Ok(self.to_cell()?.hash())
    }

    /// Signs with the guest key; errors if `key` is not this receipt's `guest_key`.
    pub fn sign(&self, key: &SigningKey) -> Result<SignedReceipt, TonError> {
        if key.verifying_key().to_bytes() != self.guest_key {
            return Err(TonError::KeyMismatch);
        }
        let signature = key.sign(&self.signing_hash()?).to_bytes();
        Ok(SignedReceipt {
            receipt: *self,
            signature,
        })
    }
}

impl Voucher {
    /// The voucher cell (schema in the module docs).
    pub fn to_cell(&self) -> Result<Cell, TonError> {
        let mut b = CellBuilder::new();
        store_domain(&mut b, VOUCHER_TAG, &self.domain)?;
        b.store_bytes(&self.client_key)?
            .store_bytes(&self.guest_key)?
            .store_coins(self.cap)?;
        b.build()
    }

    /// Parses a voucher cell strictly.
    pub fn from_cell(c: &Cell) -> Result<Self, TonError> {
        let mut s = CellSlice::new(c);
        let domain = load_domain(&mut s, VOUCHER_TAG)?;
        let client_key = s.load_bytes::<32>()?;
        let guest_key = s.load_bytes::<32>()?;
        let cap = s.load_coins()?;
        s.end()?;
        Ok(Voucher {
            domain,
            client_key,
            guest_key,
            cap,
        })
    }

    /// The 32 bytes the client signs: the cell's representation hash.
    pub fn signing_hash(&self) -> Result<[u8; 32], TonError> {
        Ok(self.to_cell()?.hash())
    }

    /// Signs with the client key; errors if `key` is not this voucher's `client_key`.
    pub fn sign(&self, key: &SigningKey) -> Result<SignedVoucher, TonError> {
        if key.verifying_key().to_bytes() != self.client_key {
            return Err(TonError::KeyMismatch);
        }
        let signature = key.sign(&self.signing_hash()?).to_bytes();
        Ok(SignedVoucher {
            voucher: *self,
            signature,
        })
    }
}

fn verify_sig(key: &[u8; 32], hash: &[u8; 32], sig: &[u8; 64]) -> Result<(), TonError> {
    let vk = VerifyingKey::from_bytes(key).map_err(|_| TonError::BadPublicKey)?;
    // `verify_strict` rejects small-order keys and non-canonical signatures as well.
    // Anything that passes it also passes CHKSIGNU's RFC 8032 check on chain.
    vk.verify_strict(hash, &Signature::from_bytes(sig))
        .map_err(|_| TonError::BadSignature)
}

fn signed_cell(sig: &[u8; 64], inner: Cell) -> Result<Cell, TonError> {
    let mut b = CellBuilder::new();
    b.store_bytes(sig)?.store_ref(inner)?;
    b.build()
}

fn load_signed(c: &Cell) -> Result<([u8; 64], &Cell), TonError> {
    let mut s = CellSlice::new(c);
    let sig = s.load_bytes::<64>()?;
    let inner = s.load_ref()?;
    s.end()?;
    Ok((sig, inner))
}

/// A receipt with the guest's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// Ed25519 signature by `receipt.guest_key` over the receipt's hash.
    pub signature: [u8; 64],
}

impl SignedReceipt {
    /// `signature:bits512 receipt:^PupaReceipt`.
    pub fn to_cell(&self) -> Result<Cell, TonError> {
        signed_cell(&self.signature, self.receipt.to_cell()?)
    }

    /// Parses (does not verify) a signed receipt cell.
    pub fn from_cell(c: &Cell) -> Result<Self, TonError> {
        let (signature, inner) = load_signed(c)?;
        Ok(SignedReceipt {
            receipt: Receipt::from_cell(inner)?,
            signature,
        })
    }

    /// Checks the guest's signature.
    pub fn verify(&self) -> Result<(), TonError> {
        verify_sig(
            &self.receipt.guest_key,
            &self.receipt.signing_hash()?,
            &self.signature,
        )
    }
}

/// A voucher with the client's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedVoucher {
    /// The voucher.
    pub voucher: Voucher,
    /// Ed25519 signature by `voucher.client_key` over the voucher's hash.
    pub signature: [u8; 64],
}

impl SignedVoucher {
    /// `signature:bits512 voucher:^PupaVoucher`.
    pub fn to_cell(&self) -> Result<Cell, TonError> {
        signed_cell(&self.signature, self.voucher.to_cell()?)
    }

    /// Parses (does not verify) a signed voucher cell.
    pub fn from_cell(c: &Cell) -> Result<Self, TonError> {
        let (signature, inner) = load_signed(c)?;
        Ok(SignedVoucher {
            voucher: Voucher::from_cell(inner)?,
            signature,
        })
    }

    /// Checks the client's signature.
    pub fn verify(&self) -> Result<(), TonError> {
        verify_sig(
            &self.voucher.client_key,
            &self.voucher.signing_hash()?,
            &self.signature,
        )
    }
}

/// A payout claim: what the relay sends to the payment contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payout {
    /// Free for the sender; echoed in nothing but useful to match logs.
    pub query_id: u64,
    /// The guest's receipt.
    pub receipt: SignedReceipt,
    /// The client's voucher covering it.
    pub voucher: SignedVoucher,
}

impl Payout {
    /// `payout#70757061 query_id:uint64 ^SignedReceipt ^SignedVoucher`.
    pub fn to_cell(&self) -> Result<Cell, TonError> {
        let mut b = CellBuilder::new();
        b.store_uint(u128::from(OP_PAYOUT), 32)?
            .store_uint(u128::from(self.query_id), 64)?
            .store_ref(self.receipt.to_cell()?)?
            .store_ref(self.voucher.to_cell()?)?;
        b.build()
    }

    /// Parses (does not verify) a payout body.
    pub fn from_cell(c: &Cell) -> Result<Self, TonError> {
        let mut s = CellSlice::new(c);
        if s.load_uint(32)? != u128::from(OP_PAYOUT) {
            return Err(TonError::WrongTag);
        }
        let query_id = s.load_uint(64)? as u64;
        let receipt = SignedReceipt::from_cell(s.load_ref()?)?;
        let voucher = SignedVoucher::from_cell(s.load_ref()?)?;
        s.end()?;
        Ok(Payout {
            query_id,
            receipt,
            voucher,
        })
    }

    /// Everything the contract checks that needs no chain state: both signatures, both
    /// documents for `domain`, the voucher naming the receipt's guest and client, and
    /// `price ≤ cap`. (Registration, `seq > last` and the deposit are the contract's.)
    pub fn check(&self, domain: &Domain) -> Result<(), TonError> {
        let (r, v) = (&self.receipt.receipt, &self.voucher.voucher);
        if r.domain != *domain || v.domain != *domain {
            return Err(TonError::WrongDomain);
        }
        if v.guest_key != r.guest_key || v.client_key != r.client_key {
            return Err(TonError::VoucherMismatch);
        }
        self.receipt
            .verify()
            .map_err(|_| TonError::BadGuestSignature)?;
        self.voucher
            .verify()
            .map_err(|_| TonError::BadClientSignature)?;
        if r.price > v.cap {
            return Err(TonError::AboveCap);
        }
        Ok(())
    }
}

/// The client key's statement of which address may withdraw its deposit. The contract
/// requires it (signed) with a key's first deposit, so nobody can claim a key before its
/// owner does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerProof {
    /// Network and payment contract.
    pub domain: Domain,
    /// The address allowed to request and receive withdrawals.
    pub owner: MsgAddressInt,
}

impl OwnerProof {
    /// The `pupa_owner` cell.
    pub fn to_cell(&self) -> Result<Cell, TonError> {
        let mut b = CellBuilder::new();
        store_domain(&mut b, OWNER_TAG, &self.domain)?;
        b.store_address(&self.owner)?;
        b.build()
    }

    /// `signature:bits512 ^PupaOwner`, signed by the client key.
    pub fn sign(&self, client: &SigningKey) -> Result<Cell, TonError> {
        let cell = self.to_cell()?;
        let sig = client.sign(&cell.hash()).to_bytes();
        signed_cell(&sig, cell)
    }

    /// A deposit body crediting `client_key`, with a signed proof (first deposit) or none.
    pub fn deposit_body(
        query_id: u64,
        client_key: &[u8; 32],
        proof: Option<Cell>,
    ) -> Result<Cell, TonError> {
        let mut b = CellBuilder::new();
        b.store_uint(u128::from(OP_DEPOSIT), 32)?
            .store_uint(u128::from(query_id), 64)?
            .store_bytes(client_key)?;
        match proof {
            Some(p) => b.store_bit(true)?.store_ref(p)?,
            None => b.store_bit(false)?,
        };
        b.build()
    }
}
