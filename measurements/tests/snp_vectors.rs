//! Published SNP launch-digest vectors (virtee/sev-snp-measure `tests/test_guest.py` at
//! 8f2b337e38bc83f87cd30f3253cdfe8e3e12cc3a, also listed in the shared VECTORS.md), reproduced
//! with our implementation on the same fixtures (see testdata/SOURCE).

use pupa_measurements::hexfmt;
use pupa_measurements::snp::{self, CpuType, KernelHashes, SnpConfig, SnpError, VmmType};
use pupa_measurements::Firmware;

fn fixture(name: &str) -> Firmware {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    Firmware::parse(&std::fs::read(&path).expect("fixture present")).expect("fixture parses")
}

const AMDSEV: &str = "ovmf_AmdSev_suffix.bin";
const OVMFX64: &str = "ovmf_OvmfX64_suffix.bin";
const OVMF_HASH: &str = "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74";

/// Kernel and initrd are /dev/null in upstream's tests: SHA-256 of the empty string.
fn empty_kernel(append: &str) -> Option<KernelHashes> {
    Some(KernelHashes::new(b"", Some(b""), Some(append)))
}

fn cfg(vcpus: u32, features: u64, kernel: Option<KernelHashes>) -> SnpConfig {
    SnpConfig {
        guest_features: features,
        kernel_hashes: kernel,
        ..SnpConfig::new(vcpus, CpuType::Epyc)
    }
}

fn digest(fw: &str, c: &SnpConfig) -> String {
    hexfmt::encode(&snp::launch_digest(&fixture(fw), c).expect("digest"))
}

#[test]
fn ovmf_hash() {
    assert_eq!(hexfmt::encode(&snp::ovmf_hash(&fixture(AMDSEV))), OVMF_HASH);
}

#[test]
fn seeded_with_ovmf_hash() {
    let seed = Some(hexfmt::decode_array::<48>(OVMF_HASH).unwrap());
    let cases = [
        (0x21, "", "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198"),
        (0x1, "", "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5"),
        (0x21, "console=ttyS0 loglevel=7", "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"),
        (0x1, "console=ttyS0 loglevel=7", "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"),
    ];
    for (features, append, want) in cases {
        let c = SnpConfig {
            ovmf_hash: seed,
            ..cfg(1, features, empty_kernel(append))
        };
        assert_eq!(
            digest(AMDSEV, &c),
            want,
            "features {features:#x} append {append:?}"
        );
    }
}

#[test]
fn qemu_with_and_without_kernel() {
    let cases = [
        (1, 0x21, Some("console=ttyS0 loglevel=7"), "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"),
        (1, 0x1, Some("console=ttyS0 loglevel=7"), "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"),
        (1, 0x21, None, "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b"),
        (1, 0x1, None, "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d"),
        (4, 0x21, Some(""), "4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942"),
        (4, 0x1, Some(""), "5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5"),
    ];
    for (vcpus, features, append, want) in cases {
        let c = cfg(vcpus, features, append.and_then(empty_kernel));
        assert_eq!(
            digest(AMDSEV, &c),
            want,
            "{vcpus} vCPUs features {features:#x} append {append:?}"
        );
    }
}

#[test]
fn ec2_and_gce() {
    let ec2 = |features| SnpConfig {
        vmm: VmmType::Ec2,
        ..cfg(1, features, empty_kernel(""))
    };
    assert_eq!(digest(AMDSEV, &ec2(0x21)), "0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb");
    assert_eq!(digest(AMDSEV, &ec2(0x1)), "0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056");
    // GCE is measured without a vCPU signature (its VMSAs use a fixed RDX).
    let gce = |vcpus| SnpConfig {
        vmm: VmmType::Gce,
        vcpu_sig: None,
        ..cfg(vcpus, 0x1, empty_kernel(""))
    };
    assert_eq!(digest(AMDSEV, &gce(1)), "5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e");
    assert_eq!(digest(AMDSEV, &gce(4)), "5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d");
}

#[test]
fn standard_ovmf_build() {
    assert_eq!(digest(OVMFX64, &cfg(1, 0x21, None)), "28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385");
    assert_eq!(digest(OVMFX64, &cfg(1, 0x1, None)), "da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005");
    // Upstream: "Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section".
    let err = snp::launch_digest(&fixture(OVMFX64), &cfg(1, 0x21, empty_kernel(""))).unwrap_err();
    assert_eq!(err, SnpError::NoKernelHashesSection);
}

#[test]
fn vmsa_dump_and_config_errors() {
    let fw = fixture(AMDSEV);
    let (d, pages) = snp::launch_digest_with_vmsas(&fw, &cfg(4, 0x1, None)).unwrap();
    assert_eq!(pages.len(), 4);
    assert_eq!(d, snp::launch_digest(&fw, &cfg(4, 0x1, None)).unwrap());
    // BSP: CS base 0xFFFF0000, RIP 0xFFF0; APs: the SEV-ES reset address 0x80B004.
    assert_eq!(&pages[0][0x18..0x20], &0xffff_0000u64.to_le_bytes());
    assert_eq!(&pages[0][0x178..0x180], &0xfff0u64.to_le_bytes());
    assert_eq!(&pages[1][0x18..0x20], &0x0080_0000u64.to_le_bytes());
    assert_eq!(&pages[1][0x178..0x180], &0xb004u64.to_le_bytes());
    assert_eq!(&pages[1][0x3b0..0x3b8], &1u64.to_le_bytes());
    assert_eq!(pages[2], pages[1]);

    let qemu_no_sig = SnpConfig {
        vcpu_sig: None,
        ..cfg(1, 1, None)
    };
    assert_eq!(
        snp::launch_digest(&fw, &qemu_no_sig),
        Err(SnpError::MissingVcpuSig)
    );
    assert_eq!(
        snp::launch_digest(&fw, &cfg(0, 1, None)),
        Err(SnpError::BadVcpus(0))
    );
}
