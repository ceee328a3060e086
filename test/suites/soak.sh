#!/usr/bin/env bash
# Suite: the brief soak (test/soak/soak.pl --cycles 2000): concurrent
# login/logout cycles over 10 services with reloads, backend kills and
# invalid values in between; checks that every slot comes back and that
# shared memory and the processes' memory stay flat.
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec bash "$here/../soak/run-soak.sh" --brief
