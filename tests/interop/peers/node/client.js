'use strict';
// The Node client of the interop tests: the `gearman` package from the npm registry.
//
// node client.js PORT < PLAN
//
// Reads the JSON plan on stdin, submits its tasks on one connection, prints one JSON line
// per event and {"ev": "done"} at the end; {"ev": "timeout"} and exit 3 past the plan's
// timeout_ms.  Plan and events: tests/interop/language_peers.py.
//
// The library hands over packets, not tasks, so this script keeps the task set the way
// libgearman and Gearman::Taskset do: each JOB_CREATED goes to the oldest submit still
// without a handle; WORK_DATA, WORK_WARNING and WORK_STATUS go to the oldest waiting task
// with that handle; a terminal packet ends that task.  A packet for a handle no task holds
// is printed as {"ev": "unmatched"} and ends the script with exit 2.
const fs = require('fs');
const gearman = require('gearman');

const port = Number(process.argv[2]);
const plan = JSON.parse(fs.readFileSync(0, 'utf8'));
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

setTimeout(() => {
  emit({ ev: 'timeout' });
  process.exit(3);
}, plan.timeout_ms);

const client = gearman('127.0.0.1', port);
const tasks = plan.tasks || [];
const needHandle = []; // task indexes in submit order, waiting for JOB_CREATED
const waiting = new Map(); // handle -> task indexes still waiting for their end
let open = tasks.filter((task) => !task.background).length;

function unmatched(type, handle) {
  emit({ ev: 'unmatched', type, handle });
  process.exit(2);
}

function oldest(type, handle) {
  const list = waiting.get(handle);
  if (!list) unmatched(type, handle);
  return list[0];
}

function end(type, handle, event) {
  const i = oldest(type, handle);
  const list = waiting.get(handle);
  list.shift();
  if (list.length === 0) waiting.delete(handle);
  emit({ t: i, ...event });
  open -= 1;
  if (open === 0 && needHandle.length === 0) afterTasks();
}

client.on('JOB_CREATED', (handle) => {
  const i = needHandle.shift();
  if (i === undefined) unmatched('JOB_CREATED', handle);
  emit({ t: i, ev: 'created', handle });
  if (!tasks[i].background) {
    if (!waiting.has(handle)) waiting.set(handle, []);
    waiting.get(handle).push(i);
  }
  if (needHandle.length === 0 && open === 0) afterTasks();
});
client.on('WORK_DATA', ({ handle, payload }) => {
  emit({ t: oldest('WORK_DATA', handle), ev: 'data', data: payload.toString('utf8') });
});
client.on('WORK_WARNING', ({ handle, warning }) => {
  emit({ t: oldest('WORK_WARNING', handle), ev: 'warning', data: warning });
});
client.on('WORK_STATUS', ({ handle, percent_num, percent_den }) => {
  const [num, den] = [Number(percent_num), Number(percent_den)];
  emit({ t: oldest('WORK_STATUS', handle), ev: 'status', num, den });
});
client.on('WORK_COMPLETE', ({ handle, payload }) => {
  end('WORK_COMPLETE', handle, { ev: 'complete', data: payload.toString('utf8') });
});
client.on('WORK_FAIL', ({ handle }) => end('WORK_FAIL', handle, { ev: 'fail' }));
client.on('WORK_EXCEPTION', ({ handle, exception }) => {
  end('WORK_EXCEPTION', handle, { ev: 'exception', data: exception });
});
client.on('ERROR', (code, text) => {
  emit({ ev: 'error', code, text });
  process.exit(2);
});
client.on('error', (err) => {
  process.stderr.write(`socket error: ${err.message}\n`);
  process.exit(2);
});

let lastStatus = '';
client.on('STATUS_RES', (res) => {
  // gearman 2.1.0 parses STATUS_RES's last argument (the denominator) as one byte, so a
  // one-digit denominator arrives as its character code.
  const den = Number(String.fromCharCode(res.percent_done_den));
  const status = [res.known, res.running, res.percent_done_num].map(Number).concat([den]);
  const key = status.join(',');
  if (key !== lastStatus) {
    const [known, running, num] = status;
    emit({ ev: 'status_res', known, running, num, den });
    lastStatus = key;
  }
  if (plan.poll.until_gone && status[0]) {
    setTimeout(() => client.getJobStatus(plan.poll.handle), 50);
  } else {
    finish();
  }
});

function finish() {
  emit({ ev: 'done' });
  process.exit(0);
}

let tasksDone = false;
function afterTasks() {
  if (tasksDone) return;
  tasksDone = true;
  if (plan.poll) client.getJobStatus(plan.poll.handle);
  else finish();
}

client.connect(() => {
  if (plan.exceptions) client.setOption('exceptions');
  tasks.forEach((task, i) => {
    needHandle.push(i);
    const options = { background: task.background, priority: task.priority };
    if (task.unique !== null) options.unique_id = task.unique;
    client.submitJob(task.fn, task.payload, options);
  });
  if (tasks.length === 0) afterTasks();
});
