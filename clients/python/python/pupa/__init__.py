"""pupa's Python client.

Verify a worker's evidence, seal matmul and attention jobs on numpy arrays to it, get the
result and the verified receipt, build TON vouchers::

    import numpy as np, pupa

    with pupa.Client.connect("127.0.0.1:7100", policy=pupa.Policy.dev()) as c:
        print(c.worker)                                 # verified evidence
        out = c.matmul(np.ones((4, 8), np.float32), np.ones((8, 2), np.float32))
        print(out.output, out.receipt.units)

Sealing, opening and every verification are the Rust client's code (``pupa._pupa``, built
from ``pupa-host``'s ``client`` module); this module only converts numpy arrays.

Element types: ``float32`` and ``float16`` arrays are sent as they are; ``dtype="bf16"`` rounds
``float32`` inputs to bfloat16 (to nearest, ties to even) and sends those; ``dtype="f16"``
rounds to float16 likewise. Results are always ``float32`` (the kernels accumulate in f32).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import numpy as np

from ._pupa import (
    DEFAULT_TIMEOUT_S,
    MAINNET_ID,
    TESTNET_ID,
    Connection as _Connection,
    EvidenceError,
    Policy,
    PupaError,
    Receipt,
    TonReceipt,
    TransportError,
    VerificationError,
    Voucher,
    Worker,
    WorkerError,
    bf16_to_f32,
    f32_to_bf16,
    voucher_public_key,
)

__all__ = [
    "Client",
    "EvidenceError",
    "JobResult",
    "MAINNET_ID",
    "Policy",
    "PupaError",
    "Receipt",
    "TESTNET_ID",
    "TonReceipt",
    "TransportError",
    "VerificationError",
    "Voucher",
    "Worker",
    "WorkerError",
    "bf16_round",
    "voucher_public_key",
]

_DTYPES = ("f32", "f16", "bf16")


class JobResult(NamedTuple):
    """A finished job: the output (float32 numpy array) and its verified receipt."""

    output: np.ndarray
    receipt: Receipt

    @property
    def job_id(self) -> str:
        return self.receipt.job_id


def _dtype_of(arrays, dtype: Optional[str]) -> str:
    if dtype is not None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r}: must be one of {_DTYPES}")
        return dtype
    kinds = {np.asarray(a).dtype for a in arrays}
    if kinds == {np.dtype(np.float32)}:
        return "f32"
    if kinds == {np.dtype(np.float16)}:
        return "f16"
    raise TypeError(
        f"inputs have dtypes {sorted(str(k) for k in kinds)}: pass float32 or float16 arrays "
        "(all the same), or dtype='f32'/'f16'/'bf16' to convert"
    )


def _encode(a, dtype: str, rank: int, name: str) -> bytes:
    a = np.asarray(a)
    if a.ndim != rank:
        raise ValueError(f"{name} must have {rank} dimensions, has shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} has dtype {a.dtype}: a floating-point array is needed")
    if dtype == "f32":
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    if dtype == "f16":
        return np.ascontiguousarray(a, dtype="<f2").tobytes()
    return f32_to_bf16(np.ascontiguousarray(a, dtype="<f4").tobytes())


def _voucher_bytes(voucher: Union[None, Voucher, bytes]) -> Optional[bytes]:
    if voucher is None or isinstance(voucher, bytes):
        return voucher
    if isinstance(voucher, Voucher):
        return voucher.boc
    raise TypeError("voucher must be a pupa.Voucher, the bytes of a voucher BOC, or None")


class Client:
    """A connection to one worker whose evidence verified under ``policy``.

    Not for concurrent use from several threads at once (calls on one client are serialized);
    open one client per thread for parallel jobs.
    """

    def __init__(self, conn: _Connection):
        self._conn = conn

    @classmethod
    def connect(
        cls,
        addr: str,
        policy: Policy,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        tls_ca: Optional[str] = None,
        tls_name: Optional[str] = None,
    ) -> "Client":
        """Connects to ``addr`` (``HOST:PORT``) and verifies fresh evidence under ``policy``.

        Raises ``EvidenceError`` when the evidence does not satisfy the policy (nothing is
        sealed to such a worker), ``TransportError`` when the worker cannot be reached.
        """
        if not isinstance(policy, Policy):
            raise TypeError("policy must be a pupa.Policy (Policy.dev / snp / tdx)")
        return cls(_Connection.open(addr, policy, timeout, tls_ca, tls_name))

    @property
    def worker(self) -> Worker:
        """The worker as last verified (TEE, keys, measurement)."""
        return self._conn.worker

    def evidence(self) -> Worker:
        """Fetches fresh evidence (a new nonce), verifies it, and returns the worker."""
        return self._conn.evidence()

    def _run(self, op, dims, dtype, tensors, causal=False, voucher=None) -> JobResult:
        shape, data, receipt = self._conn.run(
            op, dims, dtype, tensors, causal, _voucher_bytes(voucher)
        )
        out = np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32, copy=False)
        return JobResult(out, receipt)

    def matmul(self, a, b, *, dtype: Optional[str] = None, voucher=None) -> JobResult:
        """``a @ b`` for 2-D arrays ``a`` (m×k) and ``b`` (k×n); the output is m×n float32."""
        dt = _dtype_of((a, b), dtype)
        ta, tb = _encode(a, dt, 2, "a"), _encode(b, dt, 2, "b")
        (m, k), (k2, n) = np.shape(a), np.shape(b)
        if k != k2:
            raise ValueError(f"matmul shapes {np.shape(a)} and {np.shape(b)} do not agree")
        return self._run("matmul", [m, n, k], dt, [ta, tb], voucher=voucher)

    def attention(
        self, q, k, v, *, causal: bool = False, dtype: Optional[str] = None, voucher=None
    ) -> JobResult:
        """``softmax(q·kᵀ/√dim)·v`` per head, FlashAttention layout.

        ``q``: (seq_q, heads, dim); ``k``, ``v``: (seq_k, kv_heads, dim) with ``kv_heads``
        dividing ``heads`` (grouped-query attention). ``causal`` masks bottom-right aligned
        (query i sees keys j ≤ i + seq_k − seq_q). The output is (seq_q, heads, dim) float32.
        """
        dt = _dtype_of((q, k, v), dtype)
        tq, tk, tv = (_encode(x, dt, 3, n) for x, n in ((q, "q"), (k, "k"), (v, "v")))
        (seq_q, heads, dim), (seq_k, kv_heads, dim_k) = np.shape(q), np.shape(k)
        if np.shape(v) != np.shape(k) or dim_k != dim:
            raise ValueError(
                f"attention shapes q {np.shape(q)}, k {np.shape(k)}, v {np.shape(v)}: k and v "
                "must be (seq_k, kv_heads, dim) with q's dim"
            )
        dims = [seq_q, seq_k, heads, kv_heads, dim]
        return self._run("attention", dims, dt, [tq, tk, tv], causal=causal, voucher=voucher)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = repr(self.worker) if self._conn.is_open else "closed"
        return f"Client({state})"


def bf16_round(a) -> np.ndarray:
    """``a`` rounded to bfloat16 and back to float32: the values a bf16 job computes on."""
    raw = f32_to_bf16(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return np.frombuffer(bf16_to_f32(raw), dtype="<f4").reshape(np.shape(a))
