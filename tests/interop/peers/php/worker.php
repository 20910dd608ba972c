<?php
// The PHP worker of the interop tests: pecl gearman (GearmanWorker, on libgearman).
//
// php worker.php PORT COUNT TIMEOUT_MS FUNCTION...
//
// Registers each FUNCTION on 127.0.0.1:PORT, runs COUNT jobs, then exits 0.  Each job
// prints one JSON line ({"fn", "unique", "payload", "handle"}) and then runs the steps its
// payload spells (see tests/interop/language_peers.py).  Past TIMEOUT_MS it prints
// {"ev": "timeout"} and exits 3.
declare(strict_types=1);

function emit(array $event): void
{
    echo json_encode($event, JSON_THROW_ON_ERROR), "\n";
    fflush(STDOUT);
}

/** Run the steps of one job; the return value is what libgearman sends as WORK_COMPLETE. */
function run_job(GearmanJob $job): ?string
{
    emit([
        'fn' => $job->functionName(),
        'unique' => $job->unique(),
        'payload' => $job->workload(),
        'handle' => $job->handle(),
    ]);
    $payload = $job->workload();
    foreach (explode(';', $payload) as $step) {
        [$kind, $arg] = array_pad(explode(':', $step, 2), 2, '');
        switch ($kind) {
            case 'data':
                $job->sendData($arg);
                break;
            case 'warning':
                $job->sendWarning($arg);
                break;
            case 'status':
                [$num, $den] = explode('/', $arg);
                $job->sendStatus((int) $num, (int) $den);
                break;
            case 'sleep':
                usleep((int) $arg * 1000);
                break;
            case 'complete':
                return $arg;
            case 'fail':
                $job->sendFail();
                return null;
            case 'exception':
                $job->sendException($arg);
                return null;
            default:
                fwrite(STDERR, "unknown step: $step\n");
                exit(2);
        }
    }
    return $payload;
}

[, $port, $count, $timeoutMs] = $argv;
$deadline = microtime(true) + (int) $timeoutMs / 1000;
$worker = new GearmanWorker();
$worker->addServer('127.0.0.1', (int) $port);
foreach (array_slice($argv, 4) as $function) {
    $worker->addFunction($function, 'run_job');
}
for ($done = 0; $done < (int) $count; $done++) {
    $left = (int) (($deadline - microtime(true)) * 1000);
    if ($left > 0) {
        $worker->setTimeout($left);
    }
    if ($left <= 0 || !$worker->work()) {
        if ($left <= 0 || $worker->returnCode() === GEARMAN_TIMEOUT) {
            emit(['ev' => 'timeout']);
            exit(3);
        }
        fwrite(STDERR, 'worker error: ' . $worker->error() . "\n");
        exit(2);
    }
}
