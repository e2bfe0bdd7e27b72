# strata check, swarm.ports: the sending side of the probes between VMs. For each
# PROTO:ADDRESS:PORT, tcp connects (within TIMEOUT seconds) and prints "tcp ADDRESS PORT
# connected|refused|silent" (refused still means the packets got there and back); udp sends
# three datagrams (the listener says which arrived) and prints "udp ADDRESS PORT sent".
#   perl reach-send.pl TIMEOUT PROTO:ADDRESS:PORT...
use strict;
use warnings;
use IO::Socket::INET;

$| = 1;
my ($timeout, @probes) = @ARGV;
for my $probe (@probes) {
    my ($proto, $address, $port) = split /:/, $probe;
    if ($proto eq 'tcp') {
        my $socket = IO::Socket::INET->new(
            PeerAddr => $address,
            PeerPort => $port,
            Proto    => 'tcp',
            Timeout  => $timeout,
        );
        my $outcome = $socket ? 'connected' : $!{ECONNREFUSED} ? 'refused' : 'silent';
        close $socket if $socket;
        print "tcp $address $port $outcome\n";
    } else {
        my $socket = IO::Socket::INET->new(PeerAddr => $address, PeerPort => $port, Proto => 'udp');
        if ($socket) {
            for (1 .. 3) {
                $socket->send("strata-probe");
                select(undef, undef, undef, 0.1);
            }
            close $socket;
        }
        print "udp $address $port ", ($socket ? 'sent' : 'unsent'), "\n";
    }
}
