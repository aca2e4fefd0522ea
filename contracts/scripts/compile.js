// Compiles src/payment.fc with the FunC compiler from npm (@ton-community/func-js, WASM,
// offline) and returns the code cell.
const fs = require('node:fs');
const path = require('node:path');
const { compileFunc } = require('@ton-community/func-js');
const { Cell } = require('@ton/core');

const SRC = path.join(__dirname, '..', 'src');

async function compilePayment() {
  const res = await compileFunc({
    targets: ['payment.fc'],
    sources: (p) => fs.readFileSync(path.join(SRC, p), 'utf8'),
  });
  if (res.status !== 'ok') {
    throw new Error(`FunC compilation failed:\n${res.message}`);
  }
  return Cell.fromBoc(Buffer.from(res.codeBoc, 'base64'))[0];
}

module.exports = { compilePayment };
