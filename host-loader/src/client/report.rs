//! A verified receipt for people (text lines) and for scripts (JSON): what `pupa-host demo`
//! and `pupa-client run` print instead of `Debug` dumps of byte arrays.
//!
//! Two documents come back with a result ([`ReceiptReply`]):
//!
//! - the **per-job statement** (`pupa_protocol::receipt`): this job's units and the running
//!   total for the client's X25519 *reply* key, Ed25519-signed by the guest;
//! - when the job carried a voucher, the **TON receipt** (`pupa_protocol::ton`): the payable
//!   `Signed PupaReceipt` cell with the *cumulative* seq, units and price (nanotons) for the
//!   client's Ed25519 *voucher* key. Shown as its BOC in hex and in standard base64 (the form
//!   TON wallets and toncenter take), its representation hash, and the price in TON.
//!
//! Keys and hashes are lowercase hex; amounts are nanotons / 10⁹ with nine decimals.

use base64::Engine;
use pupa_measurements::hexfmt::encode as hex;
use pupa_protocol::msg::ReceiptReply;
use pupa_protocol::receipt::SignedReceipt as Statement;
use pupa_protocol::ton::{self, TonError};
use serde_json::{json, Value};

/// Nanotons in one TON.
pub const NANOTONS_PER_TON: u128 = 1_000_000_000;

/// `nanotons` as TON with nine decimals: `0.000000167 TON`, `1.500000000 TON`.
pub fn ton_amount(nanotons: u128) -> String {
    format!(
        "{}.{:09} TON",
        nanotons / NANOTONS_PER_TON,
        nanotons % NANOTONS_PER_TON
    )
}

/// A BOC in standard base64 (with padding), as TON tools exchange BOCs.
pub fn boc_base64(boc: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(boc)
}

/// A TON receipt BOC, decoded.
#[derive(Debug, Clone)]
pub struct TonReceiptView {
    /// The BOC as received.
    pub boc: Vec<u8>,
    /// Representation hash of the root cell (the `Signed PupaReceipt`).
    pub cell_hash: [u8; 32],
    /// Representation hash of the `PupaReceipt` cell: what the guest signed.
    pub receipt_hash: [u8; 32],
    /// The parsed receipt and signature.
    pub signed: ton::SignedReceipt,
    /// Whether the signature verifies under the receipt's guest key.
    pub verified: bool,
}

impl TonReceiptView {
    /// Parses a `Signed PupaReceipt` BOC and checks its signature.
    pub fn parse(boc: &[u8]) -> Result<Self, TonError> {
        let cell = ton::from_boc_single(boc)?;
        let signed = ton::SignedReceipt::from_cell(&cell)?;
        Ok(TonReceiptView {
            boc: boc.to_vec(),
            cell_hash: cell.hash(),
            receipt_hash: signed.receipt.signing_hash()?,
            signed,
            verified: signed.verify().is_ok(),
        })
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "signature verified"
    } else {
        "signature DOES NOT VERIFY"
    }
}

fn network_name(id: i32) -> &'static str {
    match id {
        ton::MAINNET_ID => "mainnet",
        ton::TESTNET_ID => "testnet",
        _ => "other network",
    }
}

/// The statement's signature checked under the guest key it names.
fn statement_verified(st: &Statement) -> bool {
    st.verify(&st.receipt.guest_key).is_ok()
}

/// The receipt as text lines (no indentation of their own beyond the fields' two spaces).
pub fn receipt_lines(reply: &ReceiptReply) -> Vec<String> {
    let st = &reply.statement;
    let r = &st.receipt;
    let mut out = vec![
        format!(
            "receipt (per-job statement): {}",
            verdict(statement_verified(st))
        ),
        format!("  guest key          {}", hex(&r.guest_key)),
        format!("  client reply key   {}", hex(&r.client_key)),
        format!("  job hash           {}", hex(&r.job_hash)),
        format!(
            "  seq {}, units {} (this job), total units {} (this reply key)",
            r.seq, r.units, r.total_units
        ),
    ];
    match reply.ton.as_deref() {
        None => out.push("TON receipt: none (the job carried no voucher)".into()),
        Some(boc) => out.extend(ton_lines(boc)),
    }
    out
}

/// The TON receipt's lines.
pub fn ton_lines(boc: &[u8]) -> Vec<String> {
    let v = match TonReceiptView::parse(boc) {
        Ok(v) => v,
        Err(e) => {
            return vec![
                format!("TON receipt: BOC does not parse: {e}"),
                format!("  BOC hex            {}", hex(boc)),
            ]
        }
    };
    let r = &v.signed.receipt;
    vec![
        format!("TON receipt (payable, cumulative): {}", verdict(v.verified)),
        format!("  BOC hex            {}", hex(&v.boc)),
        format!("  BOC base64         {}", boc_base64(&v.boc)),
        format!("  cell hash          {}", hex(&v.cell_hash)),
        format!("  signed hash        {}", hex(&v.receipt_hash)),
        format!(
            "  network            {} ({}), contract {}",
            r.domain.network_id,
            network_name(r.domain.network_id),
            r.domain.contract.to_raw()
        ),
        format!("  guest key          {}", hex(&r.guest_key)),
        format!("  client voucher key {}", hex(&r.client_key)),
        format!("  last job           {}", hex(&r.last_job)),
        format!(
            "  cumulative         seq {}, units {}, price {} ({} nanotons)",
            r.seq,
            r.units,
            ton_amount(r.price),
            r.price
        ),
    ]
}

/// A nanoton amount as a JSON number (as a string only past `u64::MAX`, more TON than exists).
fn nanotons_json(n: u128) -> Value {
    u64::try_from(n).map_or_else(|_| Value::String(n.to_string()), Value::from)
}

/// The same fields as JSON: hex strings, base64, numbers; `ton` is `null` without a voucher.
pub fn receipt_json(reply: &ReceiptReply) -> Value {
    let st = &reply.statement;
    let r = &st.receipt;
    json!({
        "guest_key": hex(&r.guest_key),
        "client_reply_key": hex(&r.client_key),
        "job_hash": hex(&r.job_hash),
        "seq": r.seq,
        "units": r.units,
        "total_units": r.total_units,
        "signature": hex(&st.signature),
        "signature_verified": statement_verified(st),
        "ton": reply.ton.as_deref().map(Vec::as_slice).map(ton_json),
    })
}

/// The TON receipt as JSON (`{"boc_hex", "error"}` when the BOC does not parse).
pub fn ton_json(boc: &[u8]) -> Value {
    let v = match TonReceiptView::parse(boc) {
        Ok(v) => v,
        Err(e) => return json!({ "boc_hex": hex(boc), "error": e.to_string() }),
    };
    let r = &v.signed.receipt;
    json!({
        "boc_hex": hex(&v.boc),
        "boc_base64": boc_base64(&v.boc),
        "cell_hash": hex(&v.cell_hash),
        "signed_hash": hex(&v.receipt_hash),
        "network_id": r.domain.network_id,
        "contract": r.domain.contract.to_raw(),
        "guest_key": hex(&r.guest_key),
        "client_voucher_key": hex(&r.client_key),
        "last_job": hex(&r.last_job),
        "seq": r.seq,
        "units": r.units,
        "price_nanotons": nanotons_json(r.price),
        "price_ton": ton_amount(r.price).trim_end_matches(" TON"),
        "signature": hex(&v.signed.signature),
        "signature_verified": v.verified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use pupa_protocol::receipt::Receipt as StatementBody;
    use pupa_protocol::ton::{Domain, MsgAddressInt};

    /// A fixed reply: deterministic keys (Ed25519 signatures are deterministic too).
    fn fixture(price: Option<u128>) -> ReceiptReply {
        let guest = SigningKey::from_bytes(&[0x11; 32]);
        let statement = StatementBody {
            guest_key: guest.verifying_key().to_bytes(),
            client_key: [0x22; 32],
            job_hash: [0x33; 32],
            seq: 3,
            units: 167_000_000,
            total_units: 501_000_000,
        }
        .sign(&guest);
        let ton = price.map(|price| {
            let r = ton::Receipt {
                domain: Domain {
                    network_id: ton::TESTNET_ID,
                    contract: MsgAddressInt {
                        workchain: 0,
                        hash: [0xC0; 32],
                    },
                },
                guest_key: statement.receipt.guest_key,
                client_key: SigningKey::from_bytes(&[0xA1; 32])
                    .verifying_key()
                    .to_bytes(),
                seq: 3,
                units: 501_000_000,
                price,
                last_job: [0x33; 32],
            };
            let cell = r.sign(&guest).unwrap().to_cell().unwrap();
            serde_bytes::ByteBuf::from(ton::to_boc(&cell))
        });
        ReceiptReply {
            statement,
            ton,
            ton_voucher: None,
        }
    }

    // The fixture's values, computed once and checked independently below (base64 by Python's
    // `base64.b64encode` when written, and by tonlib-core's decoder in the test; the cell hash
    // by tonlib-core).
    const GUEST: &str = "d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737";
    const VOUCHER_KEY: &str = "bc7cbcb5636375fa1d82434d466724d92377f53b980695dd49d26d0ce12205a5";
    const BOC_HEX: &str = concat!(
        "b5ee9c724101030100e400018008b5a1ee31ab5f133ede2be02b56fb3cc6aace1155eb2a9d823901143d94a",
        "27d19ace2513f8df353bdc50f4b3a991a94aa06fd726229ca66b4bed4f6890aa80001017770757072ffffff",
        "fd80181818181818181818181818181818181818181818181818181818181818181800000000000000006000",
        "000003bb94e80403eb0200c0d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c97787",
        "37bc7cbcb5636375fa1d82434d466724d92377f53b980695dd49d26d0ce12205a5333333333333333333333",
        "3333333333333333333333333333333333333333333a195be94"
    );
    const BOC_B64: &str = concat!(
        "te6cckEBAwEA5AABgAi1oe4xq18TPt4r4CtW+zzGqs4RVesqnYI5ARQ9lKJ9GaziUT+N81O9xQ9LOpkalKoG/XJi",
        "KcpmtL7U9okKqAABAXdwdXBy/////YAYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGAAAAAAAAAAAYAAA",
        "AAO7lOgEA+sCAMDQSrIydCu0qzoTaL1GFeTm0CJKtxoBa6+FIKMyyXeHN7x8vLVjY3X6HYJDTUZnJNkjd/U7mAaV",
        "3UnSbQzhIgWlMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzOhlb6U"
    );
    const CELL_HASH: &str = "34b903061694634e3ce5a382507f88c89565d9188e0ff7dca1bf77f2a0680a53";
    const SIGNED_HASH: &str = "59c0f2dbfd94c33a1ac7f1963836c1fcd47c01b33c4c244537486ba54a1027e9";

    #[test]
    fn amounts_in_ton_have_nine_decimals() {
        assert_eq!(ton_amount(0), "0.000000000 TON");
        assert_eq!(ton_amount(1), "0.000000001 TON");
        assert_eq!(ton_amount(167), "0.000000167 TON");
        assert_eq!(ton_amount(999_999_999), "0.999999999 TON");
        assert_eq!(ton_amount(1_000_000_000), "1.000000000 TON");
        assert_eq!(ton_amount(1_500_000_000), "1.500000000 TON");
        assert_eq!(
            ton_amount(u128::from(u64::MAX)),
            "18446744073.709551615 TON"
        );
        assert_eq!(nanotons_json(1_500_000_000), json!(1_500_000_000u64));
        assert_eq!(
            nanotons_json(u128::from(u64::MAX) + 1),
            json!("18446744073709551616")
        );
    }

    #[test]
    fn a_receipt_with_a_ton_receipt_reads_as_hex_base64_and_ton() {
        let z = |b: u8| format!("{b:02x}").repeat(32);
        let want = vec![
            "receipt (per-job statement): signature verified".to_string(),
            format!("  guest key          {GUEST}"),
            format!("  client reply key   {}", z(0x22)),
            format!("  job hash           {}", z(0x33)),
            "  seq 3, units 167000000 (this job), total units 501000000 (this reply key)".into(),
            "TON receipt (payable, cumulative): signature verified".into(),
            format!("  BOC hex            {BOC_HEX}"),
            format!("  BOC base64         {BOC_B64}"),
            format!("  cell hash          {CELL_HASH}"),
            format!("  signed hash        {SIGNED_HASH}"),
            format!("  network            -3 (testnet), contract 0:{}", z(0xc0)),
            format!("  guest key          {GUEST}"),
            format!("  client voucher key {VOUCHER_KEY}"),
            format!("  last job           {}", z(0x33)),
            "  cumulative         seq 3, units 501000000, price 0.000000501 TON (501 nanotons)"
                .into(),
        ];
        assert_eq!(receipt_lines(&fixture(Some(501))), want);
        // Without a voucher: the statement, and a line saying there is no TON receipt.
        let lines = receipt_lines(&fixture(None));
        assert_eq!(lines[..5], want[..5]);
        assert_eq!(
            lines[5..],
            ["TON receipt: none (the job carried no voucher)".to_string()]
        );
    }

    #[test]
    fn base64_and_cell_hash_agree_with_an_independent_implementation() {
        let boc = fixture(Some(501)).ton.unwrap().into_vec();
        assert_eq!(hex(&boc), BOC_HEX);
        assert_eq!(boc_base64(&boc), BOC_B64);
        let theirs = tonlib_core::cell::BagOfCells::parse_base64(BOC_B64)
            .unwrap()
            .single_root()
            .unwrap();
        assert_eq!(hex(theirs.cell_hash().as_slice()), CELL_HASH);
        let ours = TonReceiptView::parse(&boc).unwrap();
        assert_eq!(hex(&ours.cell_hash), CELL_HASH);
        assert_eq!(
            hex(&ours.signed.receipt.to_cell().unwrap().hash()),
            SIGNED_HASH
        );
    }

    #[test]
    fn json_has_the_same_fields() {
        let v = receipt_json(&fixture(Some(1_500_000_000)));
        assert_eq!(v["guest_key"], GUEST);
        assert_eq!(v["client_reply_key"], "22".repeat(32));
        assert_eq!(v["job_hash"], "33".repeat(32));
        assert_eq!(
            (&v["seq"], &v["units"], &v["total_units"]),
            (&json!(3), &json!(167_000_000), &json!(501_000_000))
        );
        assert_eq!(v["signature_verified"], true);
        let t = &v["ton"];
        let boc = hex(&fixture(Some(1_500_000_000)).ton.unwrap());
        assert_eq!(t["boc_hex"], boc);
        let b64 = t["boc_base64"].as_str().unwrap();
        let decoded = tonlib_core::cell::BagOfCells::parse_base64(b64).unwrap();
        assert_eq!(
            t["cell_hash"],
            hex(decoded.single_root().unwrap().cell_hash().as_slice())
        );
        assert_eq!((&t["network_id"], &t["seq"]), (&json!(-3), &json!(3)));
        assert_eq!(t["contract"], format!("0:{}", "c0".repeat(32)));
        assert_eq!(t["client_voucher_key"], VOUCHER_KEY);
        assert_eq!(t["units"], 501_000_000);
        assert_eq!(t["price_nanotons"], 1_500_000_000u64);
        assert_eq!(t["price_ton"], "1.500000000");
        assert_eq!(t["signature_verified"], true);
        assert_eq!(receipt_json(&fixture(None))["ton"], Value::Null);
    }

    #[test]
    fn bad_signatures_and_unparsable_bocs_are_said_so() {
        let mut reply = fixture(Some(0));
        reply.statement.signature[0] ^= 1;
        let boc = reply.ton.take().unwrap();
        let mut signed = TonReceiptView::parse(&boc).unwrap().signed;
        signed.signature[0] ^= 1;
        let tampered = ton::to_boc(&signed.to_cell().unwrap());
        reply.ton = Some(serde_bytes::ByteBuf::from(tampered));
        let lines = receipt_lines(&reply);
        assert_eq!(
            lines[0],
            "receipt (per-job statement): signature DOES NOT VERIFY"
        );
        assert!(
            lines[5].starts_with("TON receipt") && lines[5].ends_with("signature DOES NOT VERIFY"),
            "{lines:#?}"
        );
        assert_eq!(receipt_json(&reply)["signature_verified"], false);
        assert_eq!(receipt_json(&reply)["ton"]["signature_verified"], false);
        assert!(lines
            .last()
            .unwrap()
            .contains("price 0.000000000 TON (0 nanotons)"));
        reply.ton = Some(serde_bytes::ByteBuf::from(vec![0xb5, 0xee, 1, 2]));
        let lines = receipt_lines(&reply);
        assert!(
            lines[5].starts_with("TON receipt: BOC does not parse: "),
            "{lines:#?}"
        );
        assert_eq!(lines[6], "  BOC hex            b5ee0102");
        assert_eq!(receipt_json(&reply)["ton"]["boc_hex"], "b5ee0102");
        assert!(receipt_json(&reply)["ton"]["error"].is_string());
    }
}
