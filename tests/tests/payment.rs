//! The payment loop, closed, against the real image and a real TVM: a client with a deposit on
//! a local TON sandbox chain (contracts/src/payment.fc in @ton/sandbox behind
//! contracts/scripts/toncenter-sandbox.js) runs jobs with vouchers through the guest under QEMU
//! via `pupa-host run`; the guest sends the TON receipt and the voucher that covered each job
//! in the clear, the relay journals them, `pupa-host receipts relay --input JOURNAL` turns the
//! journal into payouts, and the contract pays the worker exactly the cumulative price, once:
//! a second relay over the same journal, and replayed payouts, pay nothing more.
//!
//! On the way, the attacks a client or host could try: a voucher whose cap is below the price,
//! a forged voucher, a voucher for another guest (each refused by the guest before the job
//! runs), and a voucher for another contract (run and billed on its own ledger by the guest,
//! refused by the relay: it is not this contract's to pay).
//!
//! Needs Node.js; installs contracts/node_modules with `npm ci` when it is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pupa_host::client::jobspec::JobSpec;
use pupa_host::client::{self, ClientError, Connection, EvidencePolicy, VerifiedWorker};
use pupa_host::receipts::message::external_payout_boc;
use pupa_host::receipts::toncenter::{ApiError, TonApi};
use pupa_host::relay::journal::{read_all, Line, Record};
use pupa_protocol::msg::ErrorCode;
use pupa_protocol::ton::{to_boc, Domain, MsgAddressInt, Payout, Voucher, MAINNET_ID};
use pupa_tests::{pupa_host_bin, start_host, workspace};

/// The client's Ed25519 voucher/deposit key seed.
const CLIENT_SEED: [u8; 32] = [0xC5; 32];
/// Its deposit: 1 TON.
const DEPOSIT: u128 = 1_000_000_000;
/// The guest's default rate (`runtime::Config::nanotons_per_munit`, docs/PROTOCOL.md
/// "Pricing"): 1 nanoton per 10⁶ units.
const NANOTONS_PER_MUNIT: u128 = 1;

/// A child process killed (and waited for) on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn contracts_dir() -> PathBuf {
    workspace().join("contracts")
}

/// The sandbox chain: the contract deployed with `guest` registered (paying `worker`) and
/// the client's deposit made; returns (process, API port, contract address).
fn start_sandbox(dir: &Path, guest: &[u8; 32]) -> (Proc, u16, MsgAddressInt) {
    let cdir = contracts_dir();
    if !cdir.join("node_modules/@ton/sandbox").exists() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&cdir)
            .status();
        assert!(matches!(st, Ok(s) if s.success()), "npm ci failed: {st:?}");
    }
    let cfg = dir.join("sandbox.json");
    let text = format!(
        r#"{{"network_id": {MAINNET_ID}, "guests": ["{}"], "clients": [{{"seed": "{}", "deposit": "{DEPOSIT}"}}]}}"#,
        hex(guest),
        hex(&CLIENT_SEED)
    );
    std::fs::write(&cfg, text).unwrap();
    let mut child = Command::new("node")
        .arg("scripts/toncenter-sandbox.js")
        .arg(&cfg)
        .current_dir(&cdir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is needed for the sandbox chain");
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.first(), Some(&"READY"), "sandbox said: {line:?}");
    let contract = MsgAddressInt::from_raw(parts[2]).unwrap();
    (proc, parts[1].parse().unwrap(), contract)
}

/// What the sandbox's contract has sent to the worker, in nanotons (GET /pupa/stats; HTTP/1.0:
/// one unchunked body).
fn paid_to_worker(port: u16) -> u128 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /pupa/stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let body = resp.split("\r\n\r\n").nth(1).expect("HTTP body");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["result"]["paid_to_worker"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A voucher BOC for `guest` on `contract` with `cap`, signed by `signer`, naming `client`.
fn voucher(
    client: &SigningKey,
    signer: &SigningKey,
    guest: &[u8; 32],
    contract: MsgAddressInt,
    cap: u128,
) -> Vec<u8> {
    let v = Voucher {
        domain: Domain {
            network_id: MAINNET_ID,
            contract,
        },
        client_key: client.verifying_key().to_bytes(),
        guest_key: *guest,
        cap,
    };
    let sig = ed25519_dalek::Signer::sign(signer, &v.signing_hash().unwrap()).to_bytes();
    let signed = pupa_protocol::ton::SignedVoucher {
        voucher: v,
        signature: sig,
    };
    to_boc(&signed.to_cell().unwrap())
}

/// A matmul job of size `n`³ (seed `seed`) carrying `voucher`, and its price.
fn job(n: u32, seed: u64, voucher: Vec<u8>) -> (pupa_protocol::job::Job, u128) {
    let spec = JobSpec::from_json(&format!(
        r#"{{"op":"matmul","m":{n},"n":{n},"k":{n},"dtype":"f32","seed":{seed}}}"#
    ))
    .unwrap();
    let mut job = spec.build().unwrap().job;
    let units = job.validate().unwrap().units;
    job.voucher = pupa_protocol::serde_bytes::ByteBuf::from(voucher);
    (
        job,
        (u128::from(units) * NANOTONS_PER_MUNIT).div_ceil(1_000_000),
    )
}

/// Runs `job` and expects the guest to refuse its voucher with a detail containing `why`.
fn expect_refused(c: &mut Connection, w: &VerifiedWorker, j: pupa_protocol::job::Job, why: &str) {
    match client::run_job(c, w, j) {
        Err(ClientError::Worker(e)) => {
            assert_eq!(e.code, ErrorCode::VoucherRefused, "{e:?}");
            assert!(e.detail.contains(why), "{why}: {}", e.detail);
        }
        other => panic!("{why}: expected VoucherRefused, got {other:?}"),
    }
}

/// `pupa-host receipts relay` over `journal` until every receipt is paid; returns its stderr.
fn receipts_relay(
    db: &Path,
    journal: &Path,
    port: u16,
    contract: &MsgAddressInt,
    guest: &[u8; 32],
) -> String {
    let child = Command::new(pupa_host_bin())
        .args(["receipts", "relay", "--db"])
        .arg(db)
        .arg("--input")
        .arg(journal)
        .args(["--api", &format!("http://127.0.0.1:{port}/api/v2")])
        .args(["--contract", &contract.to_raw()])
        .args(["--network", &MAINNET_ID.to_string()])
        .args(["--guest-key", &hex(guest)])
        .args(["--threshold", "1", "--interval-ms", "20", "--until-paid"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn receipts relay");
    let mut proc = Proc(child);
    let t = Instant::now();
    let status = loop {
        if let Some(st) = proc.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "receipts relay did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    proc.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "receipts relay failed: {status}\n{err}");
    err
}

#[test]
fn the_worker_is_paid_exactly_the_cumulative_price_once() {
    let dir = workspace()
        .join("target")
        .join("payment")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("receipts.journal");
    let host = start_host(&journal);
    let addr = host.addr.clone();
    let mut c = Connection::connect(&addr, None, Duration::from_secs(60)).expect("connect");
    let policy = EvidencePolicy {
        allow_insecure_dev: true,
        ..Default::default()
    };
    let w = client::fetch_and_verify(&mut c, &policy).expect("evidence");
    let guest = w.receipt_pk;
    let (_chain, port, contract) = start_sandbox(&dir, &guest);
    let client = SigningKey::from_bytes(&CLIENT_SEED);
    let (mut total, mut payouts) = (0u128, Vec::<Payout>::new());
    for (i, n) in [96u32, 128, 64, 160, 32].into_iter().enumerate() {
        let (_, price) = job(n, i as u64, Vec::new());
        let next = total + price;
        let mk = |signer: &SigningKey, g: &[u8; 32], to: MsgAddressInt, cap| {
            job(n, i as u64, voucher(&client, signer, g, to, cap)).0
        };
        if i == 2 {
            // Refused before the job runs, nothing billed.
            expect_refused(
                &mut c,
                &w,
                mk(&client, &guest, contract, next - 1),
                "would exceed the voucher cap",
            );
            let forger = SigningKey::from_bytes(&[0xEE; 32]);
            expect_refused(
                &mut c,
                &w,
                mk(&forger, &guest, contract, next),
                "signature does not verify",
            );
            expect_refused(
                &mut c,
                &w,
                mk(&client, &[9; 32], contract, next),
                "another guest key",
            );
        }
        // The voucher's cap is exactly the new cumulative price: only it covers this receipt.
        let out = client::run_job(&mut c, &w, mk(&client, &guest, contract, next)).expect("job");
        total = next;
        let p = out
            .receipt
            .payout()
            .unwrap()
            .expect("a TON receipt and its voucher");
        let r = &p.receipt.receipt;
        assert_eq!(
            (r.seq, r.price, p.voucher.voucher.cap),
            (i as u64 + 1, total, total)
        );
        payouts.push(p);
    }
    // A voucher for another contract: the guest bills it on that contract's ledger.
    let elsewhere = MsgAddressInt {
        workchain: 0,
        hash: [0x0e; 32],
    };
    let (j, _) = job(
        64,
        99,
        voucher(&client, &client, &guest, elsewhere, DEPOSIT),
    );
    client::run_job(&mut c, &w, j).expect("job under another contract's voucher");
    check_journal(&journal, payouts.len() + 1);

    let log = receipts_relay(&dir.join("relay.sqlite"), &journal, port, &contract, &guest);
    assert!(log.contains("another network or contract"), "{log}");
    let paid = paid_to_worker(port);
    let api = TonApi::new(&format!("http://127.0.0.1:{port}/api/v2"), None);
    let client_pk = client.verifying_key().to_bytes();
    let channel = api.get_channel(&contract, &guest, &client_pk).unwrap();
    println!(
        "payment: {} jobs, cumulative price {total} nanoton; the contract paid the worker {paid} \
         nanoton; channel (seq, paid) = {channel:?}",
        payouts.len()
    );
    assert_eq!(paid, total);
    assert_eq!(channel, (payouts.len() as u64, total));

    // Once: a second relay (its database lost) over the same journal, and replayed payouts
    // (the latest and an older one), pay nothing more.
    receipts_relay(
        &dir.join("relay-again.sqlite"),
        &journal,
        port,
        &contract,
        &guest,
    );
    for p in [&payouts[payouts.len() - 1], &payouts[1]] {
        match api.send_boc(&external_payout_boc(&contract, p).unwrap()) {
            Err(ApiError::Refused {
                exit_code: Some(411),
                ..
            }) => {}
            other => panic!("a replayed payout was not refused with 411: {other:?}"),
        }
    }
    assert_eq!(paid_to_worker(port), total);
    assert_eq!(
        api.get_channel(&contract, &guest, &client_pk).unwrap(),
        channel
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The journal holds `n` receipt records, each with the TON receipt and its voucher.
fn check_journal(journal: &Path, n: usize) {
    let lines = read_all(journal).unwrap();
    assert_eq!(lines.len(), n, "{lines:?}");
    for (at, l) in lines {
        match l {
            Ok(Line::Record(Record::Receipt {
                ton_receipt_boc: Some(_),
                ton_voucher_boc: Some(_),
                ..
            })) => {}
            other => panic!("journal byte {at}: {other:?}"),
        }
    }
}
