// Shared setup for the payment contract's sandbox tests: a fresh @ton/sandbox chain with
// the contract installed at the address the Rust golden payouts were signed for.
const { Blockchain, createShardAccount } = require('@ton/sandbox');
const { Address, beginCell, Cell, toNano } = require('@ton/core');
const { keyPairFromSeed, sign } = require('@ton/crypto');
const { compilePayment } = require('../scripts/compile');
const golden = require('./golden/payouts.json');

const OP = {
  payout: 0x70757061,
  deposit: 0x70757064,
  registerGuest: 0x70757067,
  revokeGuest: 0x70757078,
  withdrawRequest: 0x70757077,
  withdraw: 0x70757057,
};
const ERR = {
  unknownOp: 401, notOwner: 402, badGuestSig: 403, badClientSig: 404, wrongTag: 405,
  wrongNetwork: 406, wrongContract: 407, voucherMismatch: 408, unknownGuest: 409,
  unknownClient: 410, replay: 411, aboveCap: 412, aboveDeposit: 413, priceDecreased: 414,
  noWithdrawRequest: 415, withdrawTooEarly: 416, zeroDeposit: 417, badOwnerProof: 418,
};
// Seeds of the golden keys (protocol/tests/ton_golden.rs: SigningKey::from_bytes(&[seed; 32])).
const SEEDS = { client_a: 0xa1, client_b: 0xb1, client_c: 0xc1 };
const OWNER_TAG = 0x7075706f;

/** A client key's signed statement naming `owner` (signed here with @ton/crypto). */
function ownerProof(clientKeyName, owner, contract) {
  const kp = keyPairFromSeed(Buffer.alloc(32, SEEDS[clientKeyName]));
  if (kp.publicKey.toString('hex') !== golden.keys[clientKeyName]) throw new Error('seed/key mismatch');
  const doc = beginCell().storeUint(OWNER_TAG, 32).storeInt(golden.network_id, 32)
    .storeAddress(contract).storeAddress(owner).endCell();
  return beginCell().storeBuffer(sign(doc.hash(), kp.secretKey)).storeRef(doc).endCell();
}
const DELAY = 86400;
const NOW = 1_800_000_000;

let codePromise;
function code() {
  codePromise ??= compilePayment();
  return codePromise;
}

const gasReport = [];

function key(name) {
  return BigInt('0x' + golden.keys[name]);
}

function initData(owner) {
  return beginCell()
    .storeAddress(owner)
    .storeInt(golden.network_id, 32)
    .storeUint(DELAY, 32)
    .storeDict(null)
    .storeDict(null)
    .storeDict(null)
    .endCell();
}

/** The contract's own transaction in a send result. */
function contractTx(result, address) {
  const tx = result.transactions.find(
    (t) => t.inMessage && t.inMessage.info.dest && t.inMessage.info.dest.equals?.(address),
  );
  if (!tx) throw new Error('no transaction on the contract');
  const cp = tx.description.computePhase;
  return {
    tx,
    exitCode: cp.type === 'vm' ? cp.exitCode : -1,
    gasUsed: cp.type === 'vm' ? cp.gasUsed : 0n,
    aborted: tx.description.aborted,
    bounced: result.transactions.some((t) => t.inMessage?.info.type === 'internal' && t.inMessage.info.bounced),
  };
}

/** Value the contract sent to `to` in this result (0n if none). */
function paidTo(result, from, to) {
  let total = 0n;
  for (const t of result.transactions) {
    const m = t.inMessage;
    if (m && m.info.type === 'internal' && m.info.src.equals(from) && m.info.dest.equals(to)) {
      total += m.info.value.coins;
    }
  }
  return total;
}

async function setup() {
  const chain = await Blockchain.create();
  chain.now = NOW;
  const owner = await chain.treasury('owner');
  const worker = await chain.treasury('worker');
  const relay = await chain.treasury('relay');
  const clients = {
    a: await chain.treasury('client-a'),
    b: await chain.treasury('client-b'),
    c: await chain.treasury('client-c'),
  };
  const address = Address.parse(golden.contract);
  await chain.setShardAccount(
    address,
    createShardAccount({ address, code: await code(), data: initData(owner.address), balance: toNano('5') }),
  );

  const send = async (from, body, value = toNano('0.05'), label) => {
    const result = await from.send({ to: address, value, body, bounce: true });
    const r = contractTx(result, address);
    if (label) gasReport.push({ op: label, gas: r.gasUsed, fees: r.tx.totalFees.coins, exit: r.exitCode });
    return { ...r, result };
  };
  const api = {
    chain, owner, worker, relay, clients, address, send,
    register: (guestName, from = owner, label) =>
      send(from, beginCell().storeUint(OP.registerGuest, 32).storeUint(0, 64)
        .storeUint(key(guestName), 256).storeAddress(worker.address).storeUint(0xe71dec, 256).endCell(),
      toNano('0.05'), label),
    deposit: (client, clientKeyName, amount, label, proof = ownerProof(clientKeyName, client.address, address)) =>
      send(client, beginCell().storeUint(OP.deposit, 32).storeUint(0, 64).storeUint(key(clientKeyName), 256)
        .storeMaybeRef(proof).endCell(), amount, label),
    payout: async (name, label) => {
      const body = Cell.fromBoc(Buffer.from(golden.payouts[name].boc, 'hex'))[0];
      const r = await send(relay, body, toNano('0.05'), label);
      return { ...r, paid: paidTo(r.result, address, worker.address) };
    },
    withdrawOp: (op, client, clientKeyName, label) =>
      send(client, beginCell().storeUint(op, 32).storeUint(0, 64).storeUint(key(clientKeyName), 256).endCell(),
        toNano('0.05'), label),
    channel: async (guestName, clientName) => {
      const { stackReader } = await chain.runGetMethod(address, 'get_channel', [
        { type: 'int', value: key(guestName) }, { type: 'int', value: key(clientName) },
      ]);
      return { seq: stackReader.readBigNumber(), paid: stackReader.readBigNumber() };
    },
    client: async (clientName) => {
      const { stackReader } = await chain.runGetMethod(address, 'get_client', [{ type: 'int', value: key(clientName) }]);
      const found = stackReader.readBigNumber();
      const owner = stackReader.readAddressOpt();
      return { found: found !== 0n, owner, balance: stackReader.readBigNumber(), withdrawAt: stackReader.readBigNumber() };
    },
  };
  return api;
}

/** Registered guest, clients A (3 TON) and B (1 TON) funded. */
async function funded() {
  const t = await setup();
  await t.register('guest');
  await t.deposit(t.clients.a, 'client_a', toNano('3'));
  await t.deposit(t.clients.b, 'client_b', toNano('1'));
  return t;
}

module.exports = { setup, funded, golden, OP, ERR, DELAY, NOW, gasReport, key, ownerProof };
