#!/usr/bin/perl
# The Perl worker of the interop tests: Gearman::Worker (libgearman-client-perl).
#
# perl worker.pl PORT COUNT TIMEOUT_MS FUNCTION...
#
# Registers each FUNCTION on 127.0.0.1:PORT, runs COUNT jobs, then exits 0.  Each job
# prints one JSON line ({"fn", "unique", "payload", "handle"}; Gearman::Worker grabs with
# GRAB_JOB, so "unique" is null) and then runs the steps its payload spells (see
# tests/interop/language_peers.py).  Past TIMEOUT_MS it prints {"ev": "timeout"} and exits 3.
use strict;
use warnings;

use Gearman::Worker;
use JSON::PP ();
use Time::HiRes ();

my ($port, $count, $timeout_ms, @functions) = @ARGV;
$| = 1;
my $json = JSON::PP->new->canonical;

sub emit { print $json->encode($_[0]), "\n" }

local $SIG{ALRM} = sub { emit({ev => 'timeout'}); exit 3 };
Time::HiRes::alarm($timeout_ms / 1000);

my $worker = Gearman::Worker->new(job_servers => ["127.0.0.1:$port"]);
my $done = 0;

# Runs one job's steps; Gearman::Worker sends the defined return value as WORK_COMPLETE
# (and WORK_FAIL for undef, unless a result was already sent).
sub run_job {
    my ($fn, $job) = @_;
    my $payload = $job->arg;
    emit({fn => $fn, unique => undef, payload => $payload, handle => $job->handle});
    $done++;
    for my $step (split /;/, $payload) {
        my ($kind, $arg) = split /:/, $step, 2;
        $arg //= '';
        if ($kind eq 'data') {
            $worker->send_work_data($job, $arg);
        }
        elsif ($kind eq 'warning') {
            $worker->send_work_warning($job, $arg);
        }
        elsif ($kind eq 'status') {
            $job->set_status(split m{/}, $arg);
        }
        elsif ($kind eq 'sleep') {
            Time::HiRes::sleep($arg / 1000);
        }
        elsif ($kind eq 'complete') {
            return $arg;
        }
        elsif ($kind eq 'fail') {
            $worker->send_work_fail($job);
            return undef;
        }
        elsif ($kind eq 'exception') {
            # An exception sent as such: dying in the handler would also send WORK_FAIL
            # after the WORK_EXCEPTION, for a job the server has already ended.
            $worker->send_work_exception($job, $arg);
            return undef;
        }
        else {
            print STDERR "unknown step: $step\n";
            exit 2;
        }
    }
    return $payload;
}

for my $fn (@functions) {
    $worker->register_function($fn => sub { run_job($fn, $_[0]) });
}
$worker->work(stop_if => sub { $done >= $count });
