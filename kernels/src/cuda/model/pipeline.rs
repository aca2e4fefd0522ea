//! The synchronisation of the kernels — TMA producer, mbarriers, consumer warpgroups, asynchronous
//! wgmma groups and (attention) the named-barrier ping-pong between the two consumer warpgroups —
//! executed under random interleavings. Checks: no deadlock, no TMA load into a stage a consumer
//! has not yet read or an in-flight wgmma still reads, no consumer reading a stale tile, named
//! barriers balanced at exit.
//!
//! Each kernel is written below as the sequence of synchronisation operations its CUDA code
//! performs ([`gemm_programs`], [`attention_programs`]), with the same wait parities and release
//! points. [`PipeConfig`] lets the tests break them on purpose to show that the checks notice.

/// An mbarrier object (PTX ISA "Contents of the mbarrier object"): expected and
/// pending arrival counts, transaction count, current phase.
#[derive(Clone, Debug)]
pub struct MBarrier {
    expected: u32,
    pending: u32,
    tx: i64,
    phase: u32,
}

impl MBarrier {
    /// `mbarrier.init` with `count` expected arrivals per phase.
    pub fn new(count: u32) -> Self {
        MBarrier {
            expected: count,
            pending: count,
            tx: 0,
            phase: 0,
        }
    }
    /// A phase completes when all arrivals are in and no transaction bytes are outstanding
    /// ("Phase Completion of the mbarrier object").
    fn settle(&mut self) {
        if self.pending == 0 && self.tx == 0 {
            self.phase += 1;
            self.pending = self.expected;
        }
    }
    /// `mbarrier.arrive` (`n` threads). False when an arrival finds no pending count left in a
    /// phase still waiting for transaction bytes (undefined behaviour on the GPU).
    #[must_use]
    pub fn arrive(&mut self, n: u32) -> bool {
        for _ in 0..n {
            if self.pending == 0 {
                return false;
            }
            self.pending -= 1;
            self.settle();
        }
        true
    }
    /// `mbarrier.arrive.expect_tx`: raise the transaction count, then arrive once.
    #[must_use]
    pub fn arrive_expect_tx(&mut self, bytes: u32) -> bool {
        self.tx += i64::from(bytes);
        self.arrive(1)
    }
    /// The `complete_tx` of a finished TMA load.
    pub fn complete_tx(&mut self, bytes: u32) {
        self.tx -= i64::from(bytes);
        self.settle();
    }
    /// `mbarrier.try_wait.parity`: true once the phase of parity `p` has completed, i.e. the
    /// current phase has the other parity ("mbarrier.test_wait/mbarrier.try_wait").
    pub fn try_wait_parity(&self, p: u32) -> bool {
        self.phase & 1 != p
    }
}

/// A named barrier (`bar.sync` / `bar.arrive`, PTX ISA "bar, barrier") counted in warpgroups: a phase
/// completes when `expected` warpgroups have arrived; `bar.sync` also waits for that.
#[derive(Clone, Debug)]
struct NamedBar {
    expected: u32,
    arrived: u32,
    phase: u64,
}

/// One synchronisation step of a thread group, as the CUDA code performs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Spin on mbarrier `bar` until the phase of `parity` has completed.
    Wait { bar: usize, parity: u32 },
    /// `mbarrier.arrive.expect_tx` on `bar` (one stage's bytes).
    ExpectTx { bar: usize },
    /// TMA load of `tile` into (`buf`, `stage`), completing on `bar`.
    Load {
        buf: usize,
        stage: usize,
        tile: usize,
        bar: usize,
    },
    /// A wgmma of the open group reads (`buf`, `stage`), which must hold `tile`.
    Mma {
        buf: usize,
        stage: usize,
        tile: usize,
    },
    /// `wgmma.commit_group`.
    Commit,
    /// `wgmma.wait_group n`.
    WaitGroups(usize),
    /// `mbarrier.arrive` by the warpgroup's 128 threads.
    Arrive { bar: usize },
    /// `bar.sync` on named barrier `id` (0-based here).
    BarSync(usize),
    /// `bar.arrive` on named barrier `id`.
    BarArrive(usize),
}

/// The bookkeeping being checked; the kernels' values are [`GEMM_PIPE`] and [`ATTENTION_PIPE`].
#[derive(Clone, Copy, Debug)]
pub struct PipeConfig {
    /// Ring depth.
    pub stages: usize,
    /// Arrivals an "empty" barrier expects per phase (the kernels: all 256 consumer threads).
    pub empty_count: u32,
    /// Parity the producer waits on before loading tile `t` (`None`: no wait).
    pub producer_parity: fn(usize, usize) -> Option<u32>,
    /// Parity a consumer waits on for tile `t`.
    pub consumer_parity: fn(usize, usize) -> u32,
    /// GEMM: tiles behind the newest whose stage is released after `wgmma.wait_group 1`.
    pub release_lag: usize,
    /// Attention: warpgroup 1 opens the ping-pong with a `bar.arrive` for warpgroup 0.
    pub pingpong_open: bool,
    /// Attention: warpgroup 0 closes it with a last `bar.sync`, balancing the barriers.
    pub pingpong_close: bool,
}

/// The kernels' producer wait: none for the first `stages` tiles, then the parity of the phase
/// that the release of tile `t - stages` completes: `((t / stages) - 1) & 1`.
pub fn producer_parity(t: usize, stages: usize) -> Option<u32> {
    (t >= stages).then(|| ((t / stages - 1) & 1) as u32)
}

/// The kernels' consumer wait for tile `t`: `(t / stages) & 1`.
pub fn consumer_parity(t: usize, stages: usize) -> u32 {
    ((t / stages) & 1) as u32
}

/// `pupa_gemm_bf16_sm90a`.
pub const GEMM_PIPE: PipeConfig = PipeConfig {
    stages: super::gemm::STAGES,
    empty_count: 256,
    producer_parity,
    consumer_parity,
    release_lag: 1,
    pingpong_open: false,
    pingpong_close: false,
};

/// `pupa_attention_fwd_*_sm90a`.
pub const ATTENTION_PIPE: PipeConfig = PipeConfig {
    stages: super::attention::STAGES,
    empty_count: 256,
    producer_parity,
    consumer_parity,
    release_lag: 0,
    pingpong_open: true,
    pingpong_close: true,
};

/// Programs of one kernel: the producer thread's and each consumer warpgroup's, plus the
/// mbarrier counts (index = barrier number used in the ops).
#[derive(Clone, Debug)]
pub struct Programs {
    /// Expected arrivals of each mbarrier.
    pub mbarriers: Vec<u32>,
    /// Named barriers used (each expects both consumer warpgroups).
    pub named: usize,
    /// The producer thread.
    pub producer: Vec<Op>,
    /// Consumer warpgroups 0 and 1.
    pub consumers: [Vec<Op>; 2],
}

/// The GEMM: barriers `full[s]` = s, `empty[s]` = S + s; buffer 0 is the A+B stage ring.
pub fn gemm_programs(cfg: &PipeConfig, tiles: usize) -> Programs {
    let s_n = cfg.stages;
    let mut producer = Vec::new();
    for kt in 0..tiles {
        let s = kt % s_n;
        if let Some(p) = (cfg.producer_parity)(kt, s_n) {
            producer.push(Op::Wait {
                bar: s_n + s,
                parity: p,
            });
        }
        producer.push(Op::ExpectTx { bar: s });
        producer.push(Op::Load {
            buf: 0,
            stage: s,
            tile: kt,
            bar: s,
        });
    }
    let consumer = || {
        let mut ops = Vec::new();
        for kt in 0..tiles {
            let s = kt % s_n;
            ops.push(Op::Wait {
                bar: s,
                parity: (cfg.consumer_parity)(kt, s_n),
            });
            ops.extend([
                Op::Mma {
                    buf: 0,
                    stage: s,
                    tile: kt,
                },
                Op::Commit,
                Op::WaitGroups(1),
            ]);
            if kt >= cfg.release_lag {
                ops.push(Op::Arrive {
                    bar: s_n + (kt - cfg.release_lag) % s_n,
                });
            }
        }
        ops.push(Op::WaitGroups(0));
        ops
    };
    let mut mbarriers = vec![1; s_n];
    mbarriers.extend(vec![cfg.empty_count; s_n]);
    Programs {
        mbarriers,
        named: 0,
        producer,
        consumers: [consumer(), consumer()],
    }
}

/// Attention: barriers `q_full` = 0, `k_full[s]` = 1 + s, `v_full[s]` = 1 + S + s,
/// `kv_empty[s]` = 1 + 2S + s; buffers 0 = Q, 1 = K ring, 2 = V ring; named barrier w is
/// "warpgroup w's turn on the tensor cores" (hardware ids 1 and 2).
pub fn attention_programs(cfg: &PipeConfig, tiles: usize) -> Programs {
    let s_n = cfg.stages;
    let (kf, vf, ke) = (|s| 1 + s, |s| 1 + s_n + s, |s| 1 + 2 * s_n + s);
    let mut producer = vec![
        Op::ExpectTx { bar: 0 },
        Op::Load {
            buf: 0,
            stage: 0,
            tile: 0,
            bar: 0,
        },
    ];
    for j in 0..tiles {
        let s = j % s_n;
        if let Some(p) = (cfg.producer_parity)(j, s_n) {
            producer.push(Op::Wait {
                bar: ke(s),
                parity: p,
            });
        }
        producer.extend([
            Op::ExpectTx { bar: kf(s) },
            Op::Load {
                buf: 1,
                stage: s,
                tile: j,
                bar: kf(s),
            },
        ]);
        producer.extend([
            Op::ExpectTx { bar: vf(s) },
            Op::Load {
                buf: 2,
                stage: s,
                tile: j,
                bar: vf(s),
            },
        ]);
    }
    let consumer = |cw: usize| {
        let other = 1 - cw;
        let mut ops = Vec::new();
        if cw == 1 && cfg.pingpong_open {
            ops.push(Op::BarArrive(0));
        }
        ops.push(Op::Wait { bar: 0, parity: 0 });
        for j in 0..tiles {
            let (s, p) = (j % s_n, (cfg.consumer_parity)(j, s_n));
            ops.push(Op::Wait {
                bar: kf(s),
                parity: p,
            });
            ops.push(Op::BarSync(cw));
            ops.extend([
                Op::Mma {
                    buf: 0,
                    stage: 0,
                    tile: 0,
                },
                Op::Mma {
                    buf: 1,
                    stage: s,
                    tile: j,
                },
                Op::Commit,
            ]);
            ops.extend([Op::BarArrive(other), Op::WaitGroups(0)]);
            ops.push(Op::Wait {
                bar: vf(s),
                parity: p,
            });
            ops.push(Op::BarSync(cw));
            ops.extend([
                Op::Mma {
                    buf: 2,
                    stage: s,
                    tile: j,
                },
                Op::Commit,
                Op::BarArrive(other),
                Op::WaitGroups(0),
            ]);
            ops.push(Op::Arrive { bar: ke(s) });
        }
        if cw == 0 && cfg.pingpong_close {
            ops.push(Op::BarSync(0));
        }
        ops
    };
    let mut mbarriers = vec![1; 1 + 2 * s_n];
    mbarriers.extend(vec![cfg.empty_count; s_n]);
    Programs {
        mbarriers,
        named: 2,
        producer,
        consumers: [consumer(0), consumer(1)],
    }
}

/// What went wrong in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipeError {
    /// Nothing can move but not everyone finished: (producer pc, consumer pcs).
    Deadlock(usize, [usize; 2]),
    /// A TMA load into a stage a consumer has not read yet or a wgmma still reads.
    Overwrite {
        /// Buffer.
        buf: usize,
        /// Stage.
        stage: usize,
        /// Tile being loaded.
        tile: usize,
    },
    /// A wgmma read a stage that did not hold its tile.
    StaleRead {
        /// Consumer warpgroup.
        consumer: usize,
        /// Buffer.
        buf: usize,
        /// Tile it wanted.
        tile: usize,
    },
    /// A named barrier still had arrivals pending when the CTA finished.
    UnbalancedNamedBarrier(usize),
    /// More arrivals on an mbarrier than its phase expects.
    ArrivalOverflow(usize),
}

/// Deterministic xorshift for the interleaving choices.
struct Sched(u64);
impl Sched {
    fn pick(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A consumer warpgroup's execution state.
#[derive(Default)]
struct Consumer {
    pc: usize,
    open: Vec<(usize, usize, usize)>, // wgmma reads of the uncommitted group
    groups: Vec<Vec<(usize, usize, usize)>>, // committed groups in flight, oldest first
    joined: Option<(usize, u64)>,     // waiting in bar.sync: (barrier, phase joined)
    read: Vec<(usize, usize)>,        // (buf, tile) read so far
}

/// Runs `prog` under the interleaving chosen by `seed`.
pub fn run(prog: &Programs, seed: u64) -> Result<(), PipeError> {
    let mut mb: Vec<MBarrier> = prog.mbarriers.iter().map(|&c| MBarrier::new(c)).collect();
    let mut named: Vec<NamedBar> = (0..prog.named)
        .map(|_| NamedBar {
            expected: 2,
            arrived: 0,
            phase: 0,
        })
        .collect();
    let stages = 1 + prog
        .producer
        .iter()
        .map(|op| {
            if let Op::Load { stage, .. } = op {
                *stage
            } else {
                0
            }
        })
        .max()
        .unwrap_or(0);
    let mut holds: Vec<Vec<Option<usize>>> = vec![vec![None; stages]; 3]; // [buf][stage] -> tile
    let mut tma: Vec<(usize, usize, usize, usize)> = Vec::new(); // (buf, stage, tile, bar)
    let mut ppc = 0usize;
    let mut cons: [Consumer; 2] = Default::default();
    let mut sched = Sched(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let bar_arrive = |nb: &mut NamedBar| {
        nb.arrived += 1;
        if nb.arrived == nb.expected {
            nb.arrived = 0;
            nb.phase += 1;
        }
    };
    loop {
        // Enabled actions: 0 producer, 1-2 consumers, 3-4 tensor cores of a consumer, 5 TMA.
        let mut enabled = Vec::new();
        if let Some(op) = prog.producer.get(ppc) {
            let ready = match *op {
                Op::Wait { bar, parity } => mb[bar].try_wait_parity(parity),
                _ => true,
            };
            if ready {
                enabled.push(0);
            }
        }
        for (c, st) in cons.iter().enumerate() {
            if let Some(op) = prog.consumers[c].get(st.pc) {
                let ready = match *op {
                    Op::Wait { bar, parity } => mb[bar].try_wait_parity(parity),
                    Op::WaitGroups(n) => st.groups.len() <= n,
                    Op::BarSync(id) => st
                        .joined
                        .is_none_or(|(b, ph)| b == id && named[id].phase > ph),
                    _ => true,
                };
                if ready {
                    enabled.push(1 + c);
                }
            }
            if !st.groups.is_empty() {
                enabled.push(3 + c);
            }
        }
        if !tma.is_empty() {
            enabled.push(5);
        }
        if enabled.is_empty() {
            let done =
                ppc == prog.producer.len() && (0..2).all(|c| cons[c].pc == prog.consumers[c].len());
            if !done {
                return Err(PipeError::Deadlock(ppc, [cons[0].pc, cons[1].pc]));
            }
            return match named.iter().position(|nb| nb.arrived != 0) {
                Some(id) => Err(PipeError::UnbalancedNamedBarrier(id)),
                None => Ok(()),
            };
        }
        match enabled[sched.pick(enabled.len())] {
            0 => {
                match prog.producer[ppc] {
                    Op::Wait { .. } => {}
                    Op::ExpectTx { bar } => {
                        if !mb[bar].arrive_expect_tx(1) {
                            return Err(PipeError::ArrivalOverflow(bar));
                        }
                    }
                    Op::Load {
                        buf,
                        stage,
                        tile,
                        bar,
                    } => {
                        // Hazard, independent of the barriers: the tile this stage holds (or is
                        // receiving) not yet read by a consumer, or a wgmma reading it in flight.
                        let prev = tma
                            .iter()
                            .find(|t| t.0 == buf && t.1 == stage)
                            .map(|t| t.2)
                            .or(holds[buf][stage]);
                        let unread = prev
                            .is_some_and(|p| cons.iter().any(|st| !st.read.contains(&(buf, p))));
                        let reading = cons.iter().any(|st| {
                            st.groups
                                .iter()
                                .chain([&st.open])
                                .flatten()
                                .any(|r| r.0 == buf && r.1 == stage)
                        });
                        if unread || reading {
                            return Err(PipeError::Overwrite { buf, stage, tile });
                        }
                        holds[buf][stage] = None;
                        tma.push((buf, stage, tile, bar));
                    }
                    op => unreachable!("producer op {op:?}"),
                }
                ppc += 1;
            }
            a @ (1 | 2) => {
                let c = a - 1;
                let st = &mut cons[c];
                let mut advance = true;
                match prog.consumers[c][st.pc] {
                    Op::Wait { .. } | Op::WaitGroups(_) => {}
                    Op::Mma { buf, stage, tile } => {
                        if holds[buf][stage] != Some(tile) {
                            return Err(PipeError::StaleRead {
                                consumer: c,
                                buf,
                                tile,
                            });
                        }
                        st.open.push((buf, stage, tile));
                        st.read.push((buf, tile));
                    }
                    Op::Commit => st.groups.push(std::mem::take(&mut st.open)),
                    Op::Arrive { bar } => {
                        if !mb[bar].arrive(128) {
                            return Err(PipeError::ArrivalOverflow(bar));
                        }
                    }
                    Op::BarArrive(id) => bar_arrive(&mut named[id]),
                    Op::BarSync(id) => {
                        if st.joined.is_none() {
                            st.joined = Some((id, named[id].phase));
                            bar_arrive(&mut named[id]);
                            advance = false; // now wait for the phase to complete
                        } else {
                            st.joined = None;
                        }
                    }
                    op => unreachable!("consumer op {op:?}"),
                }
                if advance {
                    st.pc += 1;
                }
            }
            a @ (3 | 4) => {
                let st = &mut cons[a - 3];
                let group = st.groups.remove(0); // the tensor cores retire the oldest group
                for (buf, stage, tile) in group {
                    if holds[buf][stage] != Some(tile) {
                        return Err(PipeError::StaleRead {
                            consumer: a - 3,
                            buf,
                            tile,
                        });
                    }
                }
            }
            _ => {
                let (buf, stage, tile, bar) = tma.remove(sched.pick(tma.len()));
                holds[buf][stage] = Some(tile);
                mb[bar].complete_tx(1);
            }
        }
    }
}
