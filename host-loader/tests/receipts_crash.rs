//! Crash safety of the relay against a real TVM: a local toncenter-compatible server wraps
//! @ton/sandbox running contracts/src/payment.fc; `pupa-host receipts relay` is killed with
//! SIGKILL at random points while a stream of 1,200 receipts (plus a few bad ones) arrives,
//! and restarted each time. At the end the contract must have paid the worker exactly the
//! final cumulative price of each client: nothing lost, nothing paid twice.
//!
//! Needs Node.js; installs contracts/node_modules with `npm ci` when it is missing.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pupa_protocol::ton::*;

const N_RECEIPTS: usize = 1200;
const NETWORK: i32 = MAINNET_ID;

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// xorshift64*: reproducible randomness for kill points (seed printed on failure).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts")
}

fn ensure_node_modules() {
    let dir = contracts_dir();
    if !dir.join("node_modules/@ton/sandbox").exists() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status();
        assert!(
            matches!(st, Ok(s) if s.success()),
            "npm ci in contracts/ failed: {st:?}"
        );
    }
}

fn start_server(cfg: &Path) -> (KillOnDrop, u16, MsgAddressInt, MsgAddressInt) {
    let mut child = Command::new("node")
        .arg("scripts/toncenter-sandbox.js")
        .arg(cfg)
        .current_dir(contracts_dir())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is needed for the sandbox server");
    let stdout = child.stdout.take().unwrap();
    let guard = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.first(), Some(&"READY"), "server said: {line}");
    let port = parts[1].parse().unwrap();
    (
        guard,
        port,
        MsgAddressInt::from_raw(parts[2]).unwrap(),
        MsgAddressInt::from_raw(parts[3]).unwrap(),
    )
}

fn get_json(url: &str) -> serde_json::Value {
    ureq::get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

fn relay_cmd(
    db: &Path,
    input: &Path,
    port: u16,
    contract: &MsgAddressInt,
    guest: &[u8; 32],
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pupa-host"));
    c.args(["receipts", "relay", "--db"])
        .arg(db)
        .arg("--input")
        .arg(input)
        .args(["--api", &format!("http://127.0.0.1:{port}/api/v2")])
        .args([
            "--contract",
            &contract.to_raw(),
            "--network",
            &NETWORK.to_string(),
        ])
        .args(["--guest-key", &hex(guest)])
        .args([
            "--threshold",
            "40000000",
            "--interval-ms",
            "5",
            "--batch",
            "25",
        ])
        .stderr(Stdio::null());
    c
}

#[test]
fn relay_survives_sigkill_and_pays_exactly_the_cumulative_total() {
    ensure_node_modules();
    let seed = std::env::var("PUPA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    eprintln!("crash test seed {seed} (PUPA_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let dir = std::env::temp_dir().join(format!("pupa-receipts-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let guest = SigningKey::from_bytes(&[0x11; 32]);
    let clients = [
        SigningKey::from_bytes(&[0xA1; 32]),
        SigningKey::from_bytes(&[0xB1; 32]),
    ];
    let gk = guest.verifying_key().to_bytes();
    let cfg = serde_json::json!({
        "network_id": NETWORK,
        "reserve": "1000000000000",
        "guests": [hex(&gk)],
        "clients": clients.iter().map(|c| serde_json::json!({
            "seed": hex(&c.to_bytes()), "deposit": "5000000000000" })).collect::<Vec<_>>(),
    });
    let cfg_path = dir.join("sandbox.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let (_server, port, contract, _worker) = start_server(&cfg_path);
    let domain = Domain {
        network_id: NETWORK,
        contract,
    };

    // The guest's stream: alternating clients, rising totals, plus three bad lines.
    let mut lines = Vec::new();
    let mut totals = [0u128; 2];
    let mut seqs = [0u64; 2];
    for i in 0..N_RECEIPTS {
        let k = i % 2;
        seqs[k] += 1;
        totals[k] += u128::from(rng.range(1_000_000, 9_000_000));
        let c = &clients[k];
        let receipt = Receipt {
            domain,
            guest_key: gk,
            client_key: c.verifying_key().to_bytes(),
            seq: seqs[k],
            units: seqs[k] * 3,
            price: totals[k],
            last_job: [i as u8; 32],
        };
        let voucher = Voucher {
            domain,
            client_key: receipt.client_key,
            guest_key: gk,
            cap: 1_000_000_000_000,
        };
        let p = Payout {
            query_id: i as u64,
            receipt: receipt.sign(&guest).unwrap(),
            voucher: voucher.sign(c).unwrap(),
        };
        let boc = to_boc(&p.to_cell().unwrap());
        lines.push(hex(&boc));
        if i == 300 {
            lines.push(hex(&boc[..boc.len() - 3])); // truncated
        }
        if i == 600 {
            let mut bad = p;
            bad.receipt.signature[3] ^= 1;
            lines.push(hex(&to_boc(&bad.to_cell().unwrap())));
        }
        if i == 900 {
            let stranger = SigningKey::from_bytes(&[0x99; 32]);
            let mut r = receipt;
            r.guest_key = stranger.verifying_key().to_bytes();
            let v = Voucher {
                guest_key: r.guest_key,
                ..voucher
            };
            let q = Payout {
                query_id: 0,
                receipt: r.sign(&stranger).unwrap(),
                voucher: v.sign(c).unwrap(),
            };
            lines.push(hex(&to_boc(&q.to_cell().unwrap())));
        }
    }

    let input = dir.join("receipts.hex");
    let db = dir.join("receipts.sqlite");
    let mut input_file = std::fs::File::create(&input).unwrap();
    let mut written = 0;
    let mut kills = 0;
    let start = Instant::now();
    while written < lines.len() || kills < 20 {
        // The stream goes on while the relay lives and dies.
        let chunk = rng.range(20, 120) as usize;
        for l in lines.iter().skip(written).take(chunk) {
            writeln!(input_file, "{l}").unwrap();
        }
        input_file.sync_all().unwrap();
        written = (written + chunk).min(lines.len());
        let child = relay_cmd(&db, &input, port, &contract, &gk)
            .spawn()
            .unwrap();
        let mut guard = KillOnDrop(child);
        std::thread::sleep(Duration::from_millis(rng.range(30, 600)));
        // Child::kill is SIGKILL on Unix.
        guard.0.kill().unwrap();
        guard.0.wait().unwrap();
        kills += 1;
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "kill phase took too long"
        );
    }
    eprintln!("{kills} SIGKILLs while streaming {} lines", lines.len());

    // Let it finish: everything left is submitted on the timer.
    let status = relay_cmd(&db, &input, port, &contract, &gk)
        .args(["--max-delay-s", "0", "--until-paid"])
        .status()
        .unwrap();
    assert!(status.success());

    let stats = get_json(&format!("http://127.0.0.1:{port}/pupa/stats"));
    let paid: u128 = stats["result"]["paid_to_worker"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("sandbox stats: {stats}");
    assert_eq!(
        paid,
        totals[0] + totals[1],
        "worker paid {paid}, receipts total {}",
        totals[0] + totals[1]
    );

    // The contract's own state agrees, and the store lost nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_pupa-host"))
        .args(["receipts", "list", "--json", "--limit", "5000", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["receipts"].as_array().unwrap().len(), N_RECEIPTS);
    assert!(list["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == "paid"));
    for (k, c) in clients.iter().enumerate() {
        let ch = list["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|ch| ch["client_key"] == hex(c.verifying_key().as_bytes()))
            .unwrap();
        assert_eq!(ch["paid_seq"], seqs[k]);
        assert_eq!(ch["paid"], totals[k].to_string());
    }

    // Worse than a crash: the database is lost. A fresh relay re-ingests the stream and
    // resubmits the latest receipts; the contract refuses them as replays (411) and pays
    // nothing more.
    std::fs::remove_file(&db).unwrap();
    let _ = std::fs::remove_file(dir.join("receipts.sqlite-wal"));
    let _ = std::fs::remove_file(dir.join("receipts.sqlite-shm"));
    let status = relay_cmd(&db, &input, port, &contract, &gk)
        .args(["--max-delay-s", "0", "--until-paid"])
        .status()
        .unwrap();
    assert!(status.success());
    let after = get_json(&format!("http://127.0.0.1:{port}/pupa/stats"));
    let paid_after: u128 = after["result"]["paid_to_worker"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(paid_after, paid, "a replayed stream paid again");
    let rejected_before = stats["result"]["rejected"].as_u64().unwrap();
    assert!(
        after["result"]["rejected"].as_u64().unwrap() >= rejected_before + 2,
        "no replay reached the contract: {after}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
