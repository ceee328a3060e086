#!/usr/bin/env bash
# Suite: the brief soak (test/soak/soak.pl --cycles 2000): concurrent
# login/logout cycles over 10 services with reloads and invalid values in
# between; checks that every slot comes back, that the counters equal what
# the clients saw, that refusal lines are rate-limited and that shared
# memory and the processes' memory stay flat.  Bounded by count (2000
# cycles after a warm-up of 300) and time (the clients stop at 600 s).
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec bash "$here/../soak/run-soak.sh" --brief
