<?php
// The PHP client of the interop tests: pecl gearman (GearmanClient, on libgearman).
//
// php client.php PORT < PLAN
//
// Reads the JSON plan on stdin, submits its tasks as one task set (one connection), prints
// one JSON line per event and {"ev": "done"} at the end; {"ev": "timeout"} and exit 3 past
// the plan's timeout_ms.  Plan and events: tests/interop/language_peers.py.
declare(strict_types=1);

function emit(array $event): void
{
    echo json_encode($event, JSON_THROW_ON_ERROR), "\n";
    fflush(STDOUT);
}

function finish_timeout(): void
{
    emit(['ev' => 'timeout']);
    exit(3);
}

$port = (int) $argv[1];
$plan = json_decode(stream_get_contents(STDIN), true, 16, JSON_THROW_ON_ERROR);
$timeoutMs = (int) $plan['timeout_ms'];
$deadline = microtime(true) + $timeoutMs / 1000;

$client = new GearmanClient();
// The third argument asks for OPTION_REQ "exceptions"; libgearman 1.1.20 sends that
// request on every connection whatever it says, so a PHP client always gets exceptions.
$client->addServer('127.0.0.1', $port, (bool) $plan['exceptions']);
$client->setTimeout($timeoutMs);

$client->setCreatedCallback(function (GearmanTask $t, $i): void {
    emit(['t' => $i, 'ev' => 'created', 'handle' => $t->jobHandle()]);
});
$client->setDataCallback(function (GearmanTask $t, $i): void {
    emit(['t' => $i, 'ev' => 'data', 'data' => $t->data()]);
});
$client->setWarningCallback(function (GearmanTask $t, $i): void {
    emit(['t' => $i, 'ev' => 'warning', 'data' => $t->data()]);
});
$client->setStatusCallback(function (GearmanTask $t, $i): void {
    emit(['t' => $i, 'ev' => 'status', 'num' => $t->taskNumerator(), 'den' => $t->taskDenominator()]);
});
$client->setCompleteCallback(function (GearmanTask $t, $i): void {
    emit(['t' => $i, 'ev' => 'complete', 'data' => $t->data()]);
});
$client->setFailCallback(function (GearmanTask $t, $i): void {
    emit(['t' => $i, 'ev' => 'fail']);
});
$client->setExceptionCallback(function (GearmanTask $t, $i): void {
    emit(['t' => $i, 'ev' => 'exception', 'data' => $t->data()]);
});

$methods = [
    'high' => ['addTaskHigh', 'addTaskHighBackground'],
    'normal' => ['addTask', 'addTaskBackground'],
    'low' => ['addTaskLow', 'addTaskLowBackground'],
];
$tasks = $plan['tasks'] ?? [];
foreach ($tasks as $i => $task) {
    $method = $methods[$task['priority']][$task['background'] ? 1 : 0];
    $args = [$task['fn'], $task['payload'], $i];
    if ($task['unique'] !== null) {
        $args[] = $task['unique'];
    }
    $client->$method(...$args);
}
if ($tasks && !$client->runTasks()) {
    if ($client->returnCode() === GEARMAN_TIMEOUT) {
        finish_timeout();
    }
    fwrite(STDERR, 'runTasks: ' . $client->error() . "\n");
    exit(2);
}

if (isset($plan['poll'])) {
    $last = null;
    do {
        if (microtime(true) > $deadline) {
            finish_timeout();
        }
        [$known, $running, $num, $den] = $client->jobStatus($plan['poll']['handle']);
        $status = [(int) $known, (int) $running, (int) $num, (int) $den];
        if ($status !== $last) {
            [$k, $r, $n, $d] = $status;
            emit(['ev' => 'status_res', 'known' => $k, 'running' => $r, 'num' => $n, 'den' => $d]);
            $last = $status;
        }
        if ($plan['poll']['until_gone'] && $known) {
            usleep(50000);
        }
    } while ($plan['poll']['until_gone'] && $known);
}
emit(['ev' => 'done']);
