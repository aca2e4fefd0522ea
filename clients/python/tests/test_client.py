"""The Python client against the real guest under QEMU: evidence under a policy, sealed
matmul and attention jobs on numpy arrays checked against numpy, the verified receipt,
vouchers and the TON receipt, and the errors a wrong policy or malformed input gives."""

import json
import os

import numpy as np
import pytest

import pupa

# The kernels' accuracy bounds (docs/DESIGN.md "Kernels"; pupa-host's jobspec.rs): relative
# L2 error against an f64 reference computed from the rounded inputs.
TOL = {("matmul", "f32"): 1e-5, ("attention", "f32"): 1e-4, "f16": 2e-3, "bf16": 1e-2}


def tol(op, dtype):
    return TOL.get((op, dtype)) or TOL[dtype]


def rel_err(out, ref):
    return float(np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref))


def rounded(x, dtype):
    """The input values a job of `dtype` computes on, as f64."""
    if dtype == "f16":
        return x.astype(np.float16).astype(np.float64)
    if dtype == "bf16":
        return pupa.bf16_round(x).astype(np.float64)
    return x.astype(np.float64)


def attention_ref(q, k, v, causal):
    seq_q, heads, dim = q.shape
    seq_k, kv_heads, _ = k.shape
    group = heads // kv_heads
    out = np.empty((seq_q, heads, dim))
    for h in range(heads):
        s = q[:, h, :] @ k[:, h // group, :].T / np.sqrt(dim)
        if causal:
            i = np.arange(seq_q)[:, None]
            j = np.arange(seq_k)[None, :]
            s = np.where(j <= i + seq_k - seq_q, s, -np.inf)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h, :] = (p / p.sum(axis=1, keepdims=True)) @ v[:, h // group, :]
    return out


@pytest.fixture(scope="module")
def client(worker_addr, manifest):
    with pupa.Client.connect(worker_addr, policy=pupa.Policy.dev(expect=str(manifest))) as c:
        yield c


@pytest.fixture
def rng():
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


def test_evidence_is_verified_and_fresh(client, image_sha384):
    w = client.worker
    assert w.tee == "insecure-dev"
    assert w.measurement == image_sha384
    assert len(w.hpke_pk) == 64 and len(w.receipt_pk) == 64
    again = client.evidence()  # a new nonce, verified again
    assert (again.hpke_pk, again.receipt_pk) == (w.hpke_pk, w.receipt_pk)


def test_wrong_policy_is_refused(worker_addr, manifest):
    # SEV-SNP / TDX policies refuse a guest that offers development evidence.
    for policy in (pupa.Policy.snp(expect=str(manifest)), pupa.Policy.tdx(expect=str(manifest))):
        with pytest.raises(pupa.EvidenceError, match="INSECURE development evidence"):
            pupa.Client.connect(worker_addr, policy=policy)
    # A dev policy pinned to another image.
    with pytest.raises(pupa.EvidenceError, match="measurement"):
        pupa.Client.connect(worker_addr, policy=pupa.Policy.dev(measurements=["ab" * 48]))
    # A policy that requires an attested GPU refuses this guest (its evidence has none).
    with pytest.raises(pupa.EvidenceError, match="gpu count"):
        pupa.Client.connect(worker_addr, policy=pupa.Policy.dev().with_gpus(1))


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (17, 33, 9), (64, 48, 80)])
def test_matmul_matches_numpy(client, rng, dtype, m, n, k):
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    if dtype == "f16":
        a, b = a.astype(np.float16), b.astype(np.float16)  # sent as they are
        r = client.matmul(a, b)
    else:
        r = client.matmul(a, b, dtype=dtype)
    assert r.output.dtype == np.float32 and r.output.shape == (m, n)
    err = rel_err(r.output, rounded(a, dtype) @ rounded(b, dtype))
    assert err <= tol("matmul", dtype), (dtype, m, n, k, err)
    rc = r.receipt
    assert rc.units > 0 and len(rc.job_id) == 32 and len(rc.job_hash) == 64
    assert rc.guest_key == client.worker.receipt_pk
    assert rc.ton is None
    assert str(rc).startswith("receipt (per-job statement): signature verified")
    assert json.loads(rc.to_json())["job_id"] == rc.job_id


@pytest.mark.parametrize(
    "dtype,shape,causal",
    [
        ("f32", (37, 37, 2, 2, 64), False),
        ("f32", (16, 40, 4, 2, 64), True),
        ("bf16", (33, 33, 2, 1, 128), True),
        ("f16", (24, 24, 1, 1, 32), False),
    ],
)
def test_attention_matches_numpy(client, rng, dtype, shape, causal):
    seq_q, seq_k, heads, kv_heads, dim = shape
    q = rng.uniform(-1, 1, (seq_q, heads, dim)).astype(np.float32)
    k = rng.uniform(-1, 1, (seq_k, kv_heads, dim)).astype(np.float32)
    v = rng.uniform(-1, 1, (seq_k, kv_heads, dim)).astype(np.float32)
    r = client.attention(q, k, v, causal=causal, dtype=dtype)
    assert r.output.shape == (seq_q, heads, dim)
    ref = attention_ref(rounded(q, dtype), rounded(k, dtype), rounded(v, dtype), causal)
    err = rel_err(r.output, ref)
    assert err <= tol("attention", dtype), (dtype, shape, causal, err)


def test_vouchers_bring_cumulative_ton_receipts(client):
    secret = os.urandom(32)
    guest = client.worker.receipt_pk
    contract = "0:" + "c0" * 32
    voucher = pupa.Voucher.build(secret, guest, 10**9, contract, network_id=pupa.TESTNET_ID)
    assert voucher.client_key == pupa.voucher_public_key(secret)
    a = np.ones((8, 16), np.float32)
    first = client.matmul(a, a.T, voucher=voucher).receipt
    second = client.matmul(a, a.T, voucher=voucher.boc).receipt
    for rc in (first, second):
        t = rc.ton
        assert t is not None
        assert (t.guest_key, t.client_voucher_key) == (guest, voucher.client_key)
        assert (t.network_id, t.contract) == (pupa.TESTNET_ID, contract)
        assert t.last_job == rc.job_hash
        assert bytes.fromhex(t.boc_hex) == t.boc and len(t.cell_hash) == 64
        assert t.price_ton == f"{t.price_nanotons // 10**9}.{t.price_nanotons % 10**9:09d}"
    # Cumulative for the voucher key: seq rises, units add up, the price never falls.
    assert second.ton.seq > first.ton.seq
    assert second.ton.units == first.ton.units + second.units
    assert second.ton.price_nanotons >= first.ton.price_nanotons
    assert "TON receipt (payable, cumulative): signature verified" in str(second)


def test_malformed_input_is_refused(client):
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="do not agree"):
        client.matmul(a, np.ones((5, 2), np.float32))
    with pytest.raises(TypeError, match="float32 or float16"):
        client.matmul(a.astype(np.int32), a.T.astype(np.int32))
    with pytest.raises(ValueError, match="2 dimensions"):
        client.matmul(np.ones((2, 3, 4), np.float32), a)
    q = np.ones((4, 3, 8), np.float32)
    kv = np.ones((4, 2, 8), np.float32)  # 2 KV heads do not divide 3 query heads
    with pytest.raises(ValueError, match="invalid job"):
        client.attention(q, kv, kv)
    # The worker refuses a voucher that is not a BOC, and one for another guest.
    with pytest.raises(pupa.WorkerError) as e:
        client.matmul(a, a.T, voucher=b"not a voucher")
    assert e.value.code == "VoucherRefused" and e.value.detail
    other = pupa.Voucher.build(os.urandom(32), "11" * 32, 10**9, "0:" + "c0" * 32)
    with pytest.raises(pupa.WorkerError) as e:
        client.matmul(a, a.T, voucher=other)
    assert e.value.code == "VoucherRefused"
    # The connection still serves good jobs.
    r = client.matmul(a, a.T)
    assert np.allclose(r.output, a @ a.T)
