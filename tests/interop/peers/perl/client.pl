#!/usr/bin/perl
# The Perl client of the interop tests: Gearman::Client and Gearman::Taskset
# (libgearman-client-perl).
#
# perl client.pl PORT < PLAN
#
# Reads the JSON plan on stdin, submits its tasks as one task set (one connection), prints
# one JSON line per event and {"ev": "done"} at the end; {"ev": "timeout"} and exit 3 past
# the plan's timeout_ms.  Plan and events: tests/interop/language_peers.py.
use strict;
use warnings;

use Gearman::Client;
use Gearman::Task;
use JSON::PP ();
use Time::HiRes ();

my $port = $ARGV[0];
$| = 1;
my $json = JSON::PP->new->canonical;
my $plan = $json->decode(do { local $/; <STDIN> });

sub emit { print $json->encode($_[0]), "\n" }

local $SIG{ALRM} = sub { emit({ev => 'timeout'}); exit 3 };
Time::HiRes::alarm($plan->{timeout_ms} / 1000);

my $client = Gearman::Client->new(
    job_servers => ["127.0.0.1:$port"],
    exceptions  => $plan->{exceptions} ? 1 : 0,
);
my $taskset = $client->new_task_set;
my @tasks = @{ $plan->{tasks} || [] };
for my $i (0 .. $#tasks) {
    my $spec = $tasks[$i];
    my $task = Gearman::Task->new(
        $spec->{fn},
        \$spec->{payload},
        {
            uniq       => $spec->{unique},
            priority   => $spec->{priority},
            background => $spec->{background} ? 1 : 0,
            on_data    => sub { emit({t => $i, ev => 'data', data => ${ $_[0] }}) },
            on_warning => sub { emit({t => $i, ev => 'warning', data => ${ $_[0] }}) },
            on_status =>
                sub { emit({t => $i, ev => 'status', num => 0 + $_[0], den => 0 + $_[1]}) },
            on_complete => sub { emit({t => $i, ev => 'complete', data => ${ $_[0] }}) },
            on_fail      => sub { emit({t => $i, ev => 'fail'}) },
            on_exception => sub { emit({t => $i, ev => 'exception', data => $_[0]}) },
        }
    );
    # add_task waits for JOB_CREATED and returns "HOST:PORT//HANDLE".
    my $handle = $taskset->add_task($task);
    defined $handle or die "no JOB_CREATED for task $i\n";
    emit({t => $i, ev => 'created', handle => (split m{//}, $handle, 2)[1]});
}
$taskset->wait;

if (my $poll = $plan->{poll}) {
    my $last = '';
    while (1) {
        my $status = $client->get_status("127.0.0.1:$port//$poll->{handle}")
            or die "no STATUS_RES for $poll->{handle}\n";
        my @status = map { 0 + ($_ || 0) } @$status;
        my $key = join ',', @status;
        if ($key ne $last) {
            my ($known, $running, $num, $den) = @status;
            emit({ev => 'status_res', known => $known, running => $running,
                  num => $num, den => $den});
            $last = $key;
        }
        last unless $poll->{until_gone} && $status[0];
        Time::HiRes::sleep(0.05);
    }
}
emit({ev => 'done'});
