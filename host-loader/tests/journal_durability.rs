//! The receipt journal on a full disk and after a crash: a failed append leaves nothing behind,
//! a torn tail is repaired on open, every acknowledged receipt is readable, and `receipts relay`
//! reads the journal (and fails loudly on input it cannot use).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pupa_host::receipts::relay::{Relay, TickReport};
use pupa_host::receipts::store::ReceiptStore;
use pupa_host::receipts::toncenter::TonApi;
use pupa_host::receipts::validate::Validator;
use pupa_host::receipts::{hex, policy::BatchPolicy};
use pupa_host::relay::journal::{encode_line, read_all, Journal, JournalError, Line, Record};
use pupa_protocol::ton::*;

fn record(i: u64) -> Record {
    Record::Receipt {
        received_at: 1_700_000_000 + i,
        guest_key: "11".repeat(32),
        client_key: "a1".repeat(32),
        job_hash: format!("{i:064x}"),
        seq: i,
        units: 1000 + i,
        total_units: 1000 * i,
        signature: "5a".repeat(64),
        ton_receipt_boc: None,
        ton_voucher_boc: None,
    }
}

/// Every line of the journal is a valid record, and there are `n` of them.
fn assert_all_valid(path: &Path, n: usize) {
    let lines = read_all(path).unwrap();
    assert_eq!(lines.len(), n, "records in {}", path.display());
    for (at, l) in &lines {
        assert!(matches!(l, Ok(Line::Record(_))), "byte {at}: {l:?}");
    }
    let text = std::fs::read(path).unwrap();
    assert!(text.is_empty() || text.ends_with(b"\n"), "torn tail left");
}

/// Appends records until one fails; returns how many were acknowledged. Then a few more
/// appends must fail too and leave the file as it was.
fn fill(j: &Journal) -> (u64, JournalError) {
    let mut acked = 0;
    loop {
        match j.append_record(&record(acked + 1)) {
            Ok(()) => acked += 1,
            Err(e) => return (acked, e),
        }
        assert!(acked < 1_000_000, "the journal never filled up");
    }
}

const CHILD_ENV: &str = "PUPA_JOURNAL_FSIZE_CHILD";

/// Child half of the file-size-limit test: RLIMIT_FSIZE set off a record boundary, SIGXFSZ
/// ignored, so that an append ends in a short write and EFBIG.
fn fsize_child(path: &str) {
    let limit = 10 * encode_line(&record(1)).len() as u64 + 37;
    // SAFETY: plain libc calls with valid arguments in this single-purpose child process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let r = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &r), 0);
    }
    let j = Journal::open(Path::new(&path)).unwrap();
    let (acked, e) = fill(&j);
    for _ in 0..3 {
        assert!(j.append_record(&record(999)).is_err());
    }
    println!("ACKED {acked} ERROR {e}");
}

#[test]
fn a_write_cut_by_the_file_size_limit_is_rolled_back() {
    if let Ok(p) = std::env::var(CHILD_ENV) {
        return fsize_child(&p);
    }
    let dir = common::temp_dir("journal-fsize");
    let path = dir.join("receipts.journal");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_write_cut_by_the_file_size_limit_is_rolled_back",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.find("ACKED ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no ACKED line: {stdout}"));
    let acked: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(acked, 10, "{line}");
    assert!(line.contains("File too large"), "{line}");
    // Acknowledged == readable, and nothing torn behind.
    assert_all_valid(&path, acked);
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.recovery().dropped_bytes, 0);
    assert_eq!(j.recovery().records, acked);
    let _ = std::fs::remove_dir_all(dir);
}

/// A tmpfs of `kib` KiB mounted on a fresh directory; unmounted on drop.
struct SmallFs(PathBuf);
impl SmallFs {
    fn mount(kib: u32) -> Result<SmallFs, String> {
        let dir = common::temp_dir("journal-enospc");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !st.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(String::from_utf8_lossy(&st.stderr).into_owned());
        }
        Ok(SmallFs(dir))
    }

    /// [`mount`](Self::mount), or None (the test skips) when not root: mounting needs
    /// CAP_SYS_ADMIN, and the file-size-limit test covers the rollback. As root a failure
    /// is a test failure.
    fn mount_unless_unprivileged(kib: u32) -> Option<SmallFs> {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let root = unsafe { libc::geteuid() } == 0;
        match SmallFs::mount(kib) {
            Ok(fs) => Some(fs),
            Err(e) if !root => {
                eprintln!("SKIPPED: cannot mount a tmpfs as non-root: {e}");
                None
            }
            Err(e) => panic!("mount tmpfs as root: {e}"),
        }
    }
}
impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy: a relay thread of the test may still hold the journal open.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_write_that_hits_enospc_is_rolled_back() {
    let Some(fs) = SmallFs::mount_unless_unprivileged(16) else {
        return;
    };
    let path = fs.0.join("receipts.journal");
    let j = Journal::open(&path).unwrap();
    let (acked, e) = fill(&j);
    assert!(acked > 10, "only {acked} records fit in 16 KiB");
    assert!(e.to_string().contains("No space left"), "{e}");
    assert!(j.append_record(&record(1)).is_err());
    drop(j);
    assert_all_valid(&path, acked as usize);
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.recovery().records, acked as usize);
    assert_eq!(j.recovery().dropped_bytes, 0);
}

#[test]
fn a_torn_tail_is_repaired_on_open() {
    let dir = common::temp_dir("journal-torn");
    let path = dir.join("receipts.journal");
    let j = Journal::open(&path).unwrap();
    for i in 1..=3 {
        j.append_record(&record(i)).unwrap();
    }
    drop(j);
    let good = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of the fourth write.
    let torn = encode_line(&record(4));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&torn.as_bytes()[..torn.len() / 2]).unwrap();
    drop(f);
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.recovery().records, 3);
    assert_eq!(j.recovery().dropped_bytes, (torn.len() / 2) as u64);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
    j.append_record(&record(4)).unwrap();
    assert_all_valid(&path, 4);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_damaged_complete_record_is_kept_and_a_foreign_file_is_refused() {
    let dir = common::temp_dir("journal-damaged");
    let path = dir.join("receipts.journal");
    let j = Journal::open(&path).unwrap();
    j.append_record(&record(1)).unwrap();
    drop(j);
    let good = std::fs::read(&path).unwrap();
    // One complete line whose checksum fails (a damaged disk): kept, readers reject it; a
    // reader may have consumed it, so it must not vanish.
    let mut bad = encode_line(&record(2)).into_bytes();
    bad[30] ^= 1;
    let damaged = [good.clone(), bad.clone()].concat();
    std::fs::write(&path, &damaged).unwrap();
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.recovery().dropped_bytes, 0);
    assert_eq!(j.recovery().damaged_lines, 1);
    j.append_record(&record(3)).unwrap();
    drop(j);
    let lines = read_all(&path).unwrap();
    assert_eq!(lines.len(), 3);
    assert!(lines[1].1.is_err() && lines[2].1.is_ok(), "{lines:?}");
    // Lines that are not records (e.g. a file of another format): refused, untouched.
    for other in [
        [good.clone(), b"{\"seq\":1}\n{\"seq\":2}\n".to_vec()].concat(),
        b"{\"seq\":1}\n".to_vec(),
    ] {
        std::fs::write(&path, &other).unwrap();
        match Journal::open(&path) {
            Err(JournalError::Corrupt { .. }) => {}
            r => panic!("expected Corrupt, got {r:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), other);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn domain() -> Domain {
    Domain {
        network_id: MAINNET_ID,
        contract: MsgAddressInt {
            workchain: 0,
            hash: [0xC0; 32],
        },
    }
}

/// A TON receipt of `guest` for `client` (seq, price) and the client's voucher.
fn ton_receipt(
    guest: &SigningKey,
    client: &SigningKey,
    seq: u64,
) -> (SignedReceipt, SignedVoucher) {
    let receipt = Receipt {
        domain: domain(),
        guest_key: guest.verifying_key().to_bytes(),
        client_key: client.verifying_key().to_bytes(),
        seq,
        units: seq,
        price: 10 * u128::from(seq),
        last_job: [0; 32],
    };
    let voucher = Voucher {
        domain: domain(),
        client_key: receipt.client_key,
        guest_key: receipt.guest_key,
        cap: 1_000_000,
    };
    (receipt.sign(guest).unwrap(), voucher.sign(client).unwrap())
}

#[test]
fn the_receipt_relay_reads_the_journal_the_job_relay_writes() {
    let dir = common::temp_dir("journal-ingest");
    let path = dir.join("receipts.journal");
    let (guest, client) = (
        SigningKey::from_bytes(&[0x11; 32]),
        SigningKey::from_bytes(&[0xA1; 32]),
    );
    let (r1, voucher) = ton_receipt(&guest, &client, 1);
    let (r2, _) = ton_receipt(&guest, &client, 2);
    let j = Journal::open(&path).unwrap();
    let receipt_record = |r: &SignedReceipt| Record::Receipt {
        received_at: 1,
        guest_key: hex(&r.receipt.guest_key),
        client_key: hex(&r.receipt.client_key),
        job_hash: "00".repeat(32),
        seq: r.receipt.seq,
        units: 1,
        total_units: 1,
        signature: "00".repeat(64),
        ton_receipt_boc: Some(hex(&to_boc(&r.to_cell().unwrap()))),
        ton_voucher_boc: None, // as earlier versions journaled: paid under --vouchers
    };
    j.append_record(&receipt_record(&r1)).unwrap();
    j.append_record(&record(7)).unwrap(); // no voucher on that job: nothing to pay
    let payout = Payout {
        query_id: 0,
        receipt: r2,
        voucher,
    };
    j.append_record(&Record::Payout {
        payout_boc: hex(&to_boc(&payout.to_cell().unwrap())),
    })
    .unwrap();
    let mut relay = Relay {
        store: ReceiptStore::open(&dir.join("receipts.sqlite")).unwrap(),
        validator: Validator {
            domain: domain(),
            guests: BTreeSet::from([guest.verifying_key().to_bytes()]),
        },
        api: TonApi::new("http://127.0.0.1:9", None),
        policy: BatchPolicy {
            threshold: u128::MAX,
            max_delay_s: u64::MAX,
            resubmit_after_s: 60,
        },
        ingest_batch: 100,
        vouchers: vec![voucher],
    };
    let mut report = TickReport::default();
    relay.ingest(&path, 1, &mut report).unwrap();
    assert_eq!((report.lines, report.ingested, report.skipped), (3, 2, 1));
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let ch = relay.store.channels().unwrap();
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].latest_seq, 2);
    // Without the voucher, the journaled TON receipt is rejected with the reason.
    relay.vouchers.clear();
    relay.store.set_meta("input_offset", 0).unwrap();
    let mut report = TickReport::default();
    relay.ingest(&path, 1, &mut report).unwrap();
    assert_eq!(report.rejected.len(), 1);
    assert!(
        report.rejected[0].contains("no voucher"),
        "{:?}",
        report.rejected
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn relay_over(dir: &Path) -> Relay {
    Relay {
        store: ReceiptStore::open(&dir.join("receipts.sqlite")).unwrap(),
        validator: Validator {
            domain: domain(),
            guests: BTreeSet::new(),
        },
        api: TonApi::new("http://127.0.0.1:9", None),
        policy: BatchPolicy {
            threshold: u128::MAX,
            max_delay_s: u64::MAX,
            resubmit_after_s: 60,
        },
        ingest_batch: 100,
        vouchers: Vec::new(),
    }
}

#[test]
fn the_receipt_relay_reads_every_acknowledged_record_across_a_torn_append() {
    let dir = common::temp_dir("journal-follow");
    let path = dir.join("receipts.journal");
    let j = Journal::open(&path).unwrap();
    j.append_record(&record(1)).unwrap();
    drop(j);
    // A crash in the middle of the second append: the relay reads only the whole record.
    let torn = encode_line(&record(2));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&torn.as_bytes()[..torn.len() - 1]).unwrap(); // all but the newline
    drop(f);
    let mut relay = relay_over(&dir);
    let mut report = TickReport::default();
    relay.ingest(&path, 1, &mut report).unwrap();
    assert_eq!((report.lines, report.skipped), (1, 1), "{report:?}");
    // Restart: the torn tail is repaired, the next record is appended where it was.
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.recovery().dropped_bytes, (torn.len() - 1) as u64);
    j.append_record(&record(3)).unwrap();
    let mut report = TickReport::default();
    relay.ingest(&path, 1, &mut report).unwrap();
    assert_eq!((report.lines, report.skipped), (1, 1), "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_receipt_relay_that_rejects_every_line_exits_non_zero() {
    let dir = common::temp_dir("journal-allbad");
    let input = dir.join("receipts.journal");
    let mut bad = encode_line(&record(1)).into_bytes();
    bad[10] ^= 1;
    std::fs::write(
        &input,
        [bad, b"not a record\n{\"seq\":1}\n".to_vec()].concat(),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pupa-host"))
        .args(["receipts", "relay", "--contract"])
        .arg(format!("0:{}", "c0".repeat(32)))
        .args(["--network", "-239", "--guest-key"])
        .arg("11".repeat(32))
        .arg("--db")
        .arg(dir.join("receipts.sqlite"))
        .args([
            "--api",
            "http://127.0.0.1:9",
            "--until-paid",
            "--interval-ms",
            "10",
        ])
        .arg("--input")
        .arg(&input)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("receipts relay did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !status.success(),
        "exit 0 after rejecting everything: {err}"
    );
    assert!(
        err.contains("every one of the 3 input lines read was rejected"),
        "{err}"
    );
    assert!(!err.contains("every receipt paid"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_receipt_the_full_disk_cannot_hold_is_not_forwarded() {
    let Some(fs) = SmallFs::mount_unless_unprivileged(64) else {
        return;
    };
    let log = fs.0.join("receipts.journal");
    let guest = common::guest_process::GuestProcess::start();
    let (relay, addr) = common::relay_to(
        guest.addr(),
        pupa_host::relay::RelayConfig::default(),
        Some(&log),
    );
    // One job's receipt is stored and acknowledged; then the disk fills up.
    common::normal_job(addr);
    let mut filler = std::fs::File::create(fs.0.join("filler")).unwrap();
    while filler.write_all(&[0u8; 1024]).is_ok() {}
    drop(filler);
    // Receipts still fit in the journal's last page; the one that does not is withheld.
    let mut acked = 1;
    let e = loop {
        let mut c = common::connect(addr);
        let w = pupa_host::client::fetch_and_verify(&mut c, &common::DEV).unwrap();
        match pupa_host::client::run_job(&mut c, &w, common::small_job(acked).job) {
            Ok(_) => acked += 1,
            Err(pupa_host::client::ClientError::Worker(e)) => break e,
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(acked < 100, "the journal never filled up");
    };
    assert_eq!(e.code, pupa_protocol::msg::ErrorCode::Internal);
    assert_eq!(e.detail, pupa_host::relay::RECEIPT_NOT_STORED_DETAIL);
    // Acknowledged == readable.
    assert_eq!(relay.stats().receipts, acked);
    assert_all_valid(&log, acked as usize);
}
