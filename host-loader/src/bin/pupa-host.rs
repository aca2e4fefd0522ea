//! `pupa-host`: the operator's tool. Subcommands: `receipts` (list, check, relay).
//! (`run`, which boots the guest, comes with the VM launch code.)

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use pupa_host::receipts::policy::BatchPolicy;
use pupa_host::receipts::relay::Relay;
use pupa_host::receipts::store::ReceiptStore;
use pupa_host::receipts::toncenter::TonApi;
use pupa_host::receipts::validate::Validator;
use pupa_host::receipts::{hex, parse_hex, parse_key, ReceiptError};
use pupa_protocol::ton::{from_boc_single, Domain, MsgAddressInt, SignedVoucher};

#[derive(Parser)]
#[command(name = "pupa-host", version, about = "pupa host loader")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Receipts: list them with their payout status, check one, relay them to TON.
    #[command(subcommand)]
    Receipts(ReceiptsCmd),
    /// Boot the guest, serve clients, relay sealed jobs, restart a guest that dies.
    Run(pupa_host::relay::RunArgs),
    /// The main job on one machine: check the manifest, boot the image, run sealed jobs as a
    /// client, check results against the reference, print measurement, results and receipts.
    Demo(pupa_host::demo::DemoArgs),
    /// Print the VM launch profiles (QEMU, cloud-hypervisor; plain, SNP, TDX), or write them
    /// as scripts into a directory (qemu/).
    Profiles {
        /// Write the scripts here instead of printing them.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReceiptsCmd {
    /// List stored receipts and per-channel payout status.
    List {
        /// The receipt database.
        #[arg(long)]
        db: PathBuf,
        /// Most receipts shown.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Check a payout BOC (hex or binary file) as the relay would before submitting it.
    Check {
        #[command(flatten)]
        target: Target,
        /// File with the payout BOC.
        file: PathBuf,
    },
    /// Ingest receipts (the receipt journal `pupa-host run --receipts-log` writes, or one hex
    /// payout BOC per line) and submit payouts.
    Relay(RelayArgs),
}

#[derive(Args)]
struct RelayArgs {
    #[command(flatten)]
    target: Target,
    /// The receipt database.
    #[arg(long)]
    db: PathBuf,
    /// toncenter-compatible API base, e.g. https://toncenter.com/api/v2
    #[arg(long)]
    api: String,
    /// API key sent as X-API-Key.
    #[arg(long, env = "TONCENTER_API_KEY")]
    api_key: Option<String>,
    /// Receipt input: the job relay's receipt journal (`pupa-host run --receipts-log`).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Client vouchers (one hex `Signed PupaVoucher` BOC per line) for journaled TON receipts
    /// that came without one (journals of earlier versions); a receipt journaled with the
    /// voucher the guest sent beside it is paid under that one.
    #[arg(long)]
    vouchers: Option<PathBuf>,
    /// Submit when at least this many nanoton are unpaid on a channel.
    #[arg(long, default_value_t = 1_000_000_000)]
    threshold: u128,
    /// Submit anything unpaid older than this many seconds.
    #[arg(long, default_value_t = 3600)]
    max_delay_s: u64,
    /// Resend an unconfirmed submission after this many seconds.
    #[arg(long, default_value_t = 60)]
    resubmit_after_s: u64,
    /// Pause between rounds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Input lines read per round.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Exit once the input is drained and every receipt is paid.
    #[arg(long)]
    until_paid: bool,
}

#[derive(Args)]
struct Target {
    /// The payment contract (raw `0:hex` or user-friendly).
    #[arg(long)]
    contract: String,
    /// Network global id: -239 mainnet, -3 testnet.
    #[arg(long, allow_hyphen_values = true)]
    network: i32,
    /// Guest keys (hex) this host runs; receipts from any other key are refused.
    #[arg(long = "guest-key", required = true)]
    guest_keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Receipt(#[from] ReceiptError),
    #[error("bad --contract address: {0}")]
    Contract(String),
    #[error("bad --guest-key (want 64 hex characters): {0}")]
    GuestKey(String),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error(transparent)]
    Run(#[from] pupa_host::relay::RunError),
    #[error("{0}")]
    Msg(String),
    #[error("every one of the {0} input lines read was rejected: nothing was relayed (is --input a pupa receipt journal, and are --guest-key/--contract/--network right?)")]
    AllRejected(usize),
}

impl Target {
    fn validator(&self) -> Result<Validator, CliError> {
        let contract = MsgAddressInt::parse(&self.contract)
            .map_err(|_| CliError::Contract(self.contract.clone()))?;
        let guests = self
            .guest_keys
            .iter()
            .map(|k| parse_key(k).ok_or_else(|| CliError::GuestKey(k.clone())))
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Validator {
            domain: Domain {
                network_id: self.network,
                contract,
            },
            guests,
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ton(n: u128) -> String {
    format!("{}.{:09}", n / 1_000_000_000, n % 1_000_000_000)
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.cmd {
        Cmd::Run(a) => Ok(pupa_host::relay::run_command(a)?),
        Cmd::Demo(a) => pupa_host::demo::run(&a).map_err(CliError::Msg),
        Cmd::Profiles { write } => profiles(write.as_deref()),
        Cmd::Receipts(ReceiptsCmd::List { db, limit, json }) => receipts_list(&db, limit, json),
        Cmd::Receipts(ReceiptsCmd::Check { target, file }) => receipts_check(&target, &file),
        Cmd::Receipts(ReceiptsCmd::Relay(a)) => receipts_relay(a),
    }
}

/// `pupa-host profiles`.
fn profiles(write: Option<&std::path::Path>) -> Result<(), CliError> {
    for (name, body) in pupa_host::profile::scripts() {
        match write {
            Some(dir) => {
                let path = dir.join(&name);
                std::fs::write(&path, &body)
                    .map_err(|e| CliError::Msg(format!("{}: {e}", path.display())))?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
                }
                println!("wrote {}", path.display());
            }
            None => println!("### {name}\n{body}"),
        }
    }
    Ok(())
}

/// `pupa-host receipts list`.
fn receipts_list(db: &std::path::Path, limit: usize, json: bool) -> Result<(), CliError> {
    let store = ReceiptStore::open(db)?;
    let channels = store.channels()?;
    let rows = store.list(limit)?;
    if json {
        let ch: Vec<_> = channels
            .iter()
            .map(|c| {
                serde_json::json!({
                    "guest_key": hex(&c.guest_key), "client_key": hex(&c.client_key),
                    "latest_seq": c.latest_seq, "latest_price": c.latest_price.to_string(),
                    "paid_seq": c.confirmed_seq, "paid": c.confirmed_paid.to_string(),
                    "unpaid": c.latest_price.saturating_sub(c.confirmed_paid).to_string(),
                    "submitted_seq": c.submitted_seq, "last_error": c.last_error,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "channels": ch, "receipts": rows })
        );
        return Ok(());
    }
    println!(
        "{:<18} {:<18} {:>8} {:>16} {:>8} {:>16} {:>16}  error",
        "guest", "client", "seq", "cumulative TON", "paid seq", "paid TON", "unpaid TON"
    );
    for c in &channels {
        println!(
            "{:<18} {:<18} {:>8} {:>16} {:>8} {:>16} {:>16}  {}",
            &hex(&c.guest_key)[..16],
            &hex(&c.client_key)[..16],
            c.latest_seq,
            ton(c.latest_price),
            c.confirmed_seq,
            ton(c.confirmed_paid),
            ton(c.latest_price.saturating_sub(c.confirmed_paid)),
            c.last_error.as_deref().unwrap_or("")
        );
    }
    println!(
        "\n{:<18} {:<18} {:>8} {:>12} {:>16}  status",
        "guest", "client", "seq", "units", "cumulative TON"
    );
    for r in &rows {
        println!(
            "{:<18} {:<18} {:>8} {:>12} {:>16}  {}",
            &r.guest_key[..16],
            &r.client_key[..16],
            r.seq,
            r.units,
            ton(r.price),
            r.status
        );
    }
    Ok(())
}

/// `pupa-host receipts check`.
fn receipts_check(target: &Target, file: &std::path::Path) -> Result<(), CliError> {
    let v = target.validator()?;
    let raw = std::fs::read(file).map_err(|e| CliError::Read(file.to_path_buf(), e))?;
    let text = String::from_utf8_lossy(&raw);
    let boc = parse_hex(text.trim()).unwrap_or(raw);
    let p = v.check_boc(&boc)?;
    let r = &p.receipt.receipt;
    println!(
        "ok: seq {} units {} cumulative {} TON (cap {} TON), guest {}, client {}",
        r.seq,
        r.units,
        ton(r.price),
        ton(p.voucher.voucher.cap),
        hex(&r.guest_key),
        hex(&r.client_key)
    );
    Ok(())
}

/// `pupa-host receipts relay`.
fn receipts_relay(a: RelayArgs) -> Result<(), CliError> {
    let RelayArgs {
        target,
        db,
        api,
        api_key,
        input,
        vouchers,
        threshold,
        max_delay_s,
        resubmit_after_s,
        interval_ms,
        batch,
        until_paid,
    } = a;
    let mut relay = Relay {
        store: ReceiptStore::open(&db)?,
        validator: target.validator()?,
        api: TonApi::new(&api, api_key),
        policy: BatchPolicy {
            threshold,
            max_delay_s,
            resubmit_after_s,
        },
        ingest_batch: batch,
        vouchers: match &vouchers {
            Some(p) => read_vouchers(p)?,
            None => Vec::new(),
        },
    };
    // The chain, not the database, says what was paid.
    relay.sync(true)?;
    let (mut read, mut accepted) = (0usize, 0usize);
    loop {
        let r = relay.tick(input.as_deref(), now())?;
        for e in &r.rejected {
            eprintln!("rejected: {e}");
        }
        read += r.lines;
        accepted += r.lines - r.rejected.len();
        if r.ingested > 0 || r.submitted > 0 {
            eprintln!(
                "ingested {} receipts, submitted {} payouts",
                r.ingested, r.submitted
            );
        }
        if r.input_drained && read > 0 && accepted == 0 {
            return Err(CliError::AllRejected(read));
        }
        if until_paid && r.input_drained && r.all_paid {
            eprintln!("input drained and every receipt paid");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
}

/// Vouchers: one hex `Signed PupaVoucher` BOC per line (blank lines and `#` comments skipped).
fn read_vouchers(p: &PathBuf) -> Result<Vec<SignedVoucher>, CliError> {
    let text = std::fs::read_to_string(p).map_err(|e| CliError::Read(p.clone(), e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            parse_hex(l.trim())
                .ok_or_else(|| "not hex".to_string())
                .and_then(|b| {
                    from_boc_single(&b)
                        .and_then(|c| SignedVoucher::from_cell(&c))
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| CliError::Msg(format!("{} line {}: {e}", p.display(), i + 1)))
        })
        .collect()
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
