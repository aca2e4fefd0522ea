//! Messages carrying a payout to the contract (block.tlb):
//!
//! ```text
//! message$_ {X:Type} info:CommonMsgInfo init:(Maybe (Either StateInit ^StateInit))
//!   body:(Either X ^X) = Message X;
//! ext_in_msg_info$10 src:MsgAddressExt dest:MsgAddressInt import_fee:Grams = CommonMsgInfo;
//! int_msg_info$0 ihr_disabled:Bool bounce:Bool bounced:Bool src:MsgAddress
//!   dest:MsgAddressInt value:CurrencyCollection ihr_fee:Grams fwd_fee:Grams
//!   created_lt:uint64 created_at:uint32 = CommonMsgInfoRelaxed;
//! ```
//!
//! The external form is what the relay posts to `sendBoc` (no wallet needed: the contract
//! checks everything before `ACCEPT`). The internal form is what an operator's wallet
//! would carry in its signed transfer instead.

use pupa_protocol::ton::{to_boc, Cell, CellBuilder, MsgAddressInt, Payout, TonError};

/// `Message X` for an inbound external message to `contract` with the payout as body (in a
/// reference), no StateInit.
pub fn external_payout(contract: &MsgAddressInt, payout: &Payout) -> Result<Cell, TonError> {
    let mut b = CellBuilder::new();
    b.store_uint(0b10, 2)? // ext_in_msg_info$10
        .store_uint(0b00, 2)? // src: addr_none$00
        .store_address(contract)?
        .store_coins(0)? // import_fee
        .store_bit(false)? // init: nothing
        .store_bit(true)? // body: ^X
        .store_ref(payout.to_cell()?)?;
    b.build()
}

/// The external message as a BOC, ready for toncenter's `sendBoc`.
pub fn external_payout_boc(contract: &MsgAddressInt, payout: &Payout) -> Result<Vec<u8>, TonError> {
    Ok(to_boc(&external_payout(contract, payout)?))
}

/// `MessageRelaxed X`: an internal, bounceable message from the sender's wallet to
/// `contract` carrying `value` nanoton for gas and the payout as body.
pub fn internal_payout(
    contract: &MsgAddressInt,
    value: u128,
    payout: &Payout,
) -> Result<Cell, TonError> {
    let mut b = CellBuilder::new();
    b.store_bit(false)? // int_msg_info$0
        .store_bit(true)? // ihr_disabled
        .store_bit(true)? // bounce: failures come back with the contract's exit code
        .store_bit(false)? // bounced
        .store_uint(0b00, 2)? // src: addr_none (the wallet fills it in)
        .store_address(contract)?
        .store_coins(value)?
        .store_bit(false)? // no extra currencies
        .store_coins(0)? // ihr_fee
        .store_coins(0)? // fwd_fee
        .store_uint(0, 64)? // created_lt
        .store_uint(0, 32)? // created_at
        .store_bit(false)? // init: nothing
        .store_bit(true)? // body: ^X
        .store_ref(payout.to_cell()?)?;
    b.build()
}
