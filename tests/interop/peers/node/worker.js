'use strict';
// The Node worker of the interop tests: the `gearman` package from the npm registry.
//
// node worker.js PORT COUNT TIMEOUT_MS FUNCTION...
//
// Registers each FUNCTION on 127.0.0.1:PORT, runs COUNT jobs, then exits 0.  Each job
// prints one JSON line ({"fn", "unique", "payload", "handle"}; jobs are grabbed with
// GRAB_JOB_UNIQ) and then runs the steps its payload spells (see
// tests/interop/language_peers.py).  Past TIMEOUT_MS it prints {"ev": "timeout"} and
// exits 3.
const gearman = require('gearman');

const [port, count, timeoutMs] = process.argv.slice(2, 5).map(Number);
const functions = process.argv.slice(5);
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

setTimeout(() => {
  emit({ ev: 'timeout' });
  process.exit(3);
}, timeoutMs);

const worker = gearman('127.0.0.1', port);
let done = 0;

// Runs one job's steps; exactly one of WORK_COMPLETE, WORK_FAIL, WORK_EXCEPTION ends it.
async function runJob(job) {
  const payload = job.payload.toString('utf8');
  emit({ fn: job.func_name, unique: job.unique_id, payload, handle: job.handle });
  for (const step of payload.split(';')) {
    const colon = step.indexOf(':');
    const kind = colon < 0 ? step : step.slice(0, colon);
    const arg = colon < 0 ? '' : step.slice(colon + 1);
    switch (kind) {
      case 'data':
        worker.sendWorkData(job.handle, arg);
        break;
      case 'warning':
        worker.sendWorkWarning(job.handle, arg);
        break;
      case 'status': {
        const [num, den] = arg.split('/');
        worker.sendWorkStatus(job.handle, num, den);
        break;
      }
      case 'sleep':
        await sleep(Number(arg));
        break;
      case 'complete':
        worker.sendWorkComplete(job.handle, arg);
        return;
      case 'fail':
        worker.sendWorkFail(job.handle);
        return;
      case 'exception':
        worker.sendWorkException(job.handle, arg);
        return;
      default:
        process.stderr.write(`unknown step: ${step}\n`);
        process.exit(2);
    }
  }
  worker.sendWorkComplete(job.handle, payload);
}

worker.on('JOB_ASSIGN_UNIQ', async (job) => {
  await runJob(job);
  done += 1;
  if (done >= count) {
    worker.close(); // ends the socket once the results are written; 'close' exits
  } else {
    worker.grabUniqueJob();
  }
});
worker.on('NO_JOB', () => worker.preSleep());
worker.on('NOOP', () => worker.grabUniqueJob());
worker.on('ERROR', (code, text) => {
  process.stderr.write(`server ERROR ${code}: ${text}\n`);
  process.exit(2);
});
worker.on('error', (err) => {
  process.stderr.write(`socket error: ${err.message}\n`);
  process.exit(2);
});
worker.on('close', () => process.exit(done >= count ? 0 : 2));
worker.connect(() => {
  for (const fn of functions) worker.addFunction(fn);
  worker.grabUniqueJob();
});
