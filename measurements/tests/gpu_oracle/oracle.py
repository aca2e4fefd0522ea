#!/usr/bin/env python3
"""The independent oracle for pupa's GPU verifier: NVIDIA's own nv-local-gpu-verifier.

Runs NVIDIA's `verifier.cc_admin` (package nv-local-gpu-verifier, pinned in run.sh) in its
no-GPU test mode (`test_no_gpu`: NvmlHandlerTest stands in for NVML and reads the report and
the certificate chain from files) on the files given here, and prints one JSON line on stdout:

    {"ok": true|false, "reason": "...", "failed": [...], "nvidia_version": "2.7.3",
     "device_root_sha256": "...", "rim_root_sha256": "..."}

`ok` is NVIDIA's overall verdict (`attest()`'s status, i.e. `settings.check_status()`), `reason`
the exception NVIDIA raised (or, when it raised none, the status flags it marked False).

NVIDIA's code is not edited. What is replaced at run time, and nothing else:

  1. OCSP (network): `CcAdminUtils.ocsp_certificate_chain_validation` answers "good" without
     querying ocsp.ndis.nvidia.com. This is pupa's `--gpu-skip-revocation`.
  2. The clock: every OpenSSL `X509StoreContext` (NVIDIA's own chain checks in cc_admin_utils
     and the RIM signer chain check inside signxml) verifies at `--now` instead of the system
     time (`X509Store.set_time`). This is pupa's `--now`.
  3. The inputs of test mode: the report / chain paths (HopperSettings' documented setters,
     `set_attestation_report_path`, `set_gpu_attestation_certificates_path`), the RIM paths
     (`set_driver_rim_path`, the `vbios_rim` argument), the nonce (`attest()`'s argument), and
     the driver / VBIOS versions "NVML" reports (NvmlHandlerTest hard-codes those of NVIDIA's
     2025 sample; here `--driver-version` / `--vbios-version`, the versions the verifier expects:
     pupa's `--gpu-driver-version` / `--gpu-vbios-version`).
  4. Logging only: NVIDIA's info log goes to stderr (stdout carries the JSON line), and its
     event log file (verifier.log, written in the working directory) to a temporary directory.
"""
import argparse
import atexit
import datetime as dt
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", required=True, help="attestation report (hex text, as NVIDIA stores it)")
    p.add_argument("--chain", required=True, help="PEM certificate chain, AK cert first")
    p.add_argument("--nonce", required=True, help="expected nonce, 64 hex characters")
    p.add_argument("--driver-rim", required=True)
    p.add_argument("--vbios-rim", required=True)
    p.add_argument("--driver-version", required=True, help="driver version NVML would report")
    p.add_argument("--vbios-version", required=True, help="VBIOS version NVML would report")
    p.add_argument("--now", required=True, help="RFC 3339 time at which certificates are checked")
    a = p.parse_args()
    paths = {k: os.path.abspath(getattr(a, k)) for k in ("report", "chain", "driver_rim", "vbios_rim")}
    now = dt.datetime.fromisoformat(a.now.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    now = now.replace(tzinfo=None)  # pyOpenSSL's set_time takes a naive UTC datetime

    # Patch 4 (logging): NVIDIA's config module writes verifier.log into the working directory
    # at import time; keep it out of the repository.
    work = tempfile.mkdtemp(prefix="gpu-oracle-")
    atexit.register(shutil.rmtree, work, True)
    os.chdir(work)

    # Patch 2 (clock): pin the time of every X509 store verification. cc_admin_utils calls
    # `crypto.X509StoreContext(store, cert)` and signxml's `_add_cert_to_store` imports
    # `X509StoreContext` from OpenSSL.crypto at call time, so replacing the module attribute
    # (before NVIDIA's modules are imported) covers both.
    from OpenSSL import crypto

    class PinnedX509StoreContext(crypto.X509StoreContext):
        def __init__(self, store, certificate, chain=None):
            store.set_time(now)
            super().__init__(store, certificate, chain)

    crypto.X509StoreContext = PinnedX509StoreContext

    import warnings
    warnings.simplefilter("ignore")  # NVIDIA's deprecation notice
    from verifier import cc_admin
    from verifier.cc_admin_utils import CcAdminUtils
    from verifier.config import BaseSettings, HopperSettings, info_log, event_log
    from verifier.nvml import NvmlHandlerTest
    from importlib.metadata import version as dist_version
    __version__ = dist_version("nv-local-gpu-verifier")  # verifier.__about__ says 1.3.0

    # Patch 4 (logging): NVIDIA's info log to stderr.
    for h in list(info_log.handlers):
        info_log.removeHandler(h)
    info_log.addHandler(logging.StreamHandler(sys.stderr))
    # Keep the exception attest() swallows in test mode (it logs it, then returns None).
    caught = []

    class Catch(logging.Handler):
        def emit(self, record):
            if record.exc_info and record.exc_info[1] is not None:
                caught.append(record.exc_info[1])

    event_log.addHandler(Catch())

    # Patch 1 (OCSP): no network query; every certificate "good". NVIDIA's function also converts
    # the chain to `cryptography` certificates in place, which is kept.
    def ocsp_skipped(cert_chain, settings, mode):
        for i, cert in enumerate(cert_chain):
            if hasattr(cert, "to_cryptography"):
                cert_chain[i] = cert.to_cryptography()
        return True, "", "good", None

    CcAdminUtils.ocsp_certificate_chain_validation = staticmethod(ocsp_skipped)

    # Patch 3 (test-mode inputs): files through HopperSettings' setters; NVML's versions.
    HopperSettings.set_attestation_report_path(paths["report"])
    HopperSettings.set_gpu_attestation_certificates_path(paths["chain"])
    HopperSettings.set_driver_rim_path(paths["driver_rim"])
    orig_init = NvmlHandlerTest.__init__

    def nvml_init(self, settings):
        orig_init(self, settings)
        self.DriverVersion = a.driver_version
        self.VbiosVersion = a.vbios_version

    NvmlHandlerTest.__init__ = nvml_init

    args = {
        "verbose": False, "test_no_gpu": True, "driver_rim": paths["driver_rim"],
        "vbios_rim": paths["vbios_rim"], "user_mode": True, "allow_hold_cert": False,
        "service_key": None, "nonce": a.nonce, "rim_root_cert": None, "rim_service_url": None,
        "ocsp_url": None, "ocsp_nonce_disabled": True, "claims_version": "2.0",
    }
    ok, reason, failed = False, "", []
    try:
        evidence = cc_admin.collect_gpu_evidence(a.nonce, no_gpu_mode=True)
        result = cc_admin.attest(args, a.nonce, evidence)
        ok = bool(result and result[0])
    except Exception as e:  # evidence collection (file parsing) or the nonce argument
        caught.append(e)
    settings = cc_admin.GPU_ARCHITECTURE_MAP[9]
    failed = sorted(k for k, v in vars(settings).items() if v is False)
    if caught:
        e = caught[0]
        chain = []
        while e is not None:
            chain.append(f"{type(e).__name__}: {str(e).strip()}")
            e = e.__cause__
        reason = " <- ".join(chain)
    elif not ok:
        reason = "status false: " + ", ".join(failed)
    else:
        reason = "GPU attestation successful"
    if ok and caught:  # never report a pass next to an exception
        ok = False
    # The trust anchors NVIDIA used (its bundled certs/), so the test can check they are the
    # ones pupa pins (testdata/gpu/verifier_*.pem).
    import hashlib

    def sha256(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    print(json.dumps({"ok": ok, "reason": " ".join(reason.split()), "failed": failed,
                      "nvidia_version": __version__,
                      "device_root_sha256": sha256(BaseSettings.DEVICE_ROOT_CERT),
                      "rim_root_sha256": sha256(BaseSettings.RIM_ROOT_CERT)}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        print(json.dumps({"ok": False, "reason": "oracle error (see stderr)", "failed": []}))
        sys.exit(2)
