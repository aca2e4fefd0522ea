// Writes build/payment.code.boc (+ its hash) so the Rust relay and tools can deploy it.
const fs = require('node:fs');
const path = require('node:path');
const { compilePayment } = require('./compile');

(async () => {
  const code = await compilePayment();
  const out = path.join(__dirname, '..', 'build');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'payment.code.boc'), code.toBoc());
  console.log(`payment.fc compiled: code hash ${code.hash().toString('hex')}`);
})().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
