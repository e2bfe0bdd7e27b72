# strata check, swarm.ports: the listening side of the probes between VMs. Binds each
# PROTO:PORT given that is free, prints "ready", then "heard PROTO PORT SOURCE" for each
# probe that arrives until SECONDS have passed; a port something else holds (the node's own
# swarm, when it is in one) is reported "busy PROTO PORT" and not probed. Only perl-base is
# needed (Essential on Debian and Ubuntu).
#   perl reach-listen.pl SECONDS PROTO:PORT...
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Socket qw(sockaddr_in inet_ntoa);

$| = 1;
my ($seconds, @wanted) = @ARGV;
my $select = IO::Select->new;
my %bound;
for my $spec (@wanted) {
    my ($proto, $port) = split /:/, $spec;
    my $socket = IO::Socket::INET->new(
        LocalPort => $port,
        Proto     => $proto,
        ($proto eq 'tcp' ? (Listen => 16, ReuseAddr => 1) : ()),
    );
    if (!$socket) {
        print "busy $proto $port\n";
        next;
    }
    $select->add($socket);
    $bound{fileno $socket} = [$proto, $port];
}
print "ready\n";
my $end = time + $seconds;
while ($select->count && (my $left = $end - time) > 0) {
    for my $socket ($select->can_read($left)) {
        my ($proto, $port) = @{$bound{fileno $socket}};
        if ($proto eq 'tcp') {
            my $peer = $socket->accept or next;
            print "heard tcp $port ", $peer->peerhost, "\n";
            close $peer;
        } else {
            my $from = $socket->recv(my $data, 64);
            next unless defined $from && length $from;
            my (undef, $address) = sockaddr_in($from);
            print "heard udp $port ", inet_ntoa($address), "\n";
        }
    }
}
