// A local toncenter-compatible HTTP API (the subset a relay uses: sendBoc, runGetMethod,
// getAddressBalance) in front of @ton/sandbox, so the Rust relay runs against a real TVM.
//
// usage: node scripts/toncenter-sandbox.js CONFIG.json
//   CONFIG: { "network_id": -239, "withdraw_delay": 86400, "reserve": "1000000000000",
//             "guests": ["<hex ed25519 key>", ...],
//             "clients": [{ "seed": "<hex ed25519 seed>", "deposit": "<nanoton>" }, ...] }
// Each client deposits from its own sandbox wallet, with an owner proof signed by its key.
// Listens on 127.0.0.1 (random port) and prints one line:
//   READY <port> <contract raw address> <worker raw address>
// Test-only endpoint: GET /pupa/stats -> total value the contract sent to the worker,
// and the number of accepted and rejected external messages.
const http = require('node:http');
const fs = require('node:fs');
const { Blockchain, createShardAccount } = require('@ton/sandbox');
const { Address, beginCell, Cell, contractAddress, toNano } = require('@ton/core');
const { keyPairFromSeed, sign } = require('@ton/crypto');
const { compilePayment } = require('./compile');

const OP_REGISTER = 0x70757067;
const OP_DEPOSIT = 0x70757064;
const OWNER_TAG = 0x7075706f;

function reply(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(body);
}

function stackToJson(items) {
  // toncenter v2 style: [["num", "0x.."], ...]; slices as ["cell", {bytes: base64 boc}].
  return items.map((it) => {
    if (it.type === 'int') return ['num', (it.value < 0n ? '-0x' + (-it.value).toString(16) : '0x' + it.value.toString(16))];
    if (it.type === 'null') return ['null', null];
    if (it.type === 'cell' || it.type === 'slice') return [it.type, { bytes: it.cell.toBoc().toString('base64') }];
    return [it.type, null];
  });
}

function stackFromJson(stack) {
  return (stack || []).map(([t, v]) => {
    if (t !== 'num') throw new Error(`unsupported stack entry type ${t}`);
    const neg = String(v).startsWith('-');
    const n = BigInt(neg ? String(v).slice(1) : v);
    return { type: 'int', value: neg ? -n : n };
  });
}

async function main() {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const chain = await Blockchain.create();
  const owner = await chain.treasury('owner');
  const worker = await chain.treasury('worker');
  const code = await compilePayment();
  const data = beginCell()
    .storeAddress(owner.address)
    .storeInt(cfg.network_id, 32)
    .storeUint(cfg.withdraw_delay ?? 86400, 32)
    .storeDict(null).storeDict(null).storeDict(null)
    .endCell();
  const address = contractAddress(0, { code, data });
  await chain.setShardAccount(address, createShardAccount({
    address, code, data, balance: BigInt(cfg.reserve ?? toNano('1000')),
  }));
  for (const g of cfg.guests) {
    await owner.send({ to: address, value: toNano('0.05'), body: beginCell().storeUint(OP_REGISTER, 32)
      .storeUint(0, 64).storeUint(BigInt('0x' + g), 256).storeAddress(worker.address).storeUint(0, 256).endCell() });
  }
  for (const [i, c] of cfg.clients.entries()) {
    const client = await chain.treasury(`client-${i}`, { balance: BigInt(c.deposit) + toNano('10') });
    const kp = keyPairFromSeed(Buffer.from(c.seed, 'hex'));
    const doc = beginCell().storeUint(OWNER_TAG, 32).storeInt(cfg.network_id, 32)
      .storeAddress(address).storeAddress(client.address).endCell();
    const proof = beginCell().storeBuffer(sign(doc.hash(), kp.secretKey)).storeRef(doc).endCell();
    await client.send({ to: address, value: BigInt(c.deposit), body: beginCell().storeUint(OP_DEPOSIT, 32)
      .storeUint(0, 64).storeBuffer(kp.publicKey).storeMaybeRef(proof).endCell() });
  }

  const stats = { paid_to_worker: 0n, accepted: 0, rejected: 0, gas: [] };
  let queue = Promise.resolve(); // one message at a time, like a shard

  async function sendBoc(b64) {
    const msg = Cell.fromBoc(Buffer.from(b64, 'base64'))[0];
    try {
      const r = await chain.sendMessage(msg);
      stats.accepted += 1;
      for (const t of r.transactions) {
        const m = t.inMessage;
        if (m && m.info.type === 'internal' && m.info.src.equals(address) && m.info.dest.equals(worker.address)) {
          stats.paid_to_worker += m.info.value.coins;
        }
        if (m && m.info.type === 'external-in') stats.gas.push(Number(t.description.computePhase.gasUsed));
      }
      return { status: 200, body: { ok: true, result: { '@type': 'ok', hash: msg.hash().toString('base64') } } };
    } catch (e) {
      stats.rejected += 1;
      const code = /Exit code: (-?\d+)/.exec(e.message);
      const error = 'LITE_SERVER_UNKNOWN: cannot apply external message to current state : External message '
        + `was not accepted: exitcode=${code ? code[1] : 'unknown'}`;
      return { status: 500, body: { ok: false, error, code: 500 } };
    }
  }

  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => { raw += d; });
    req.on('end', () => {
      queue = queue.then(async () => {
        try {
          const url = new URL(req.url, 'http://localhost');
          const body = raw ? JSON.parse(raw) : {};
          if (req.method === 'POST' && (url.pathname === '/api/v2/sendBoc' || url.pathname === '/api/v2/sendBocReturnHash')) {
            const r = await sendBoc(body.boc);
            return reply(res, r.status, r.body);
          }
          if (req.method === 'POST' && url.pathname === '/api/v2/runGetMethod') {
            const g = await chain.runGetMethod(Address.parse(body.address), body.method, stackFromJson(body.stack));
            return reply(res, 200, { ok: true, result: { '@type': 'smc.runResult', gas_used: Number(g.gasUsed),
              stack: stackToJson(g.stack), exit_code: g.exitCode } });
          }
          if (req.method === 'GET' && url.pathname === '/api/v2/getAddressBalance') {
            const acc = await chain.getContract(Address.parse(url.searchParams.get('address')));
            return reply(res, 200, { ok: true, result: acc.balance.toString() });
          }
          if (req.method === 'GET' && url.pathname === '/pupa/stats') {
            return reply(res, 200, { ok: true, result: { paid_to_worker: stats.paid_to_worker.toString(),
              accepted: stats.accepted, rejected: stats.rejected,
              gas_max: Math.max(0, ...stats.gas), gas_min: stats.gas.length ? Math.min(...stats.gas) : 0 } });
          }
          return reply(res, 404, { ok: false, error: `no such method ${url.pathname}`, code: 404 });
        } catch (e) {
          return reply(res, 500, { ok: false, error: String(e.message || e), code: 500 });
        }
      });
    });
  });
  server.listen(0, '127.0.0.1', () => {
    console.log(`READY ${server.address().port} ${address.toRawString()} ${worker.address.toRawString()}`);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
