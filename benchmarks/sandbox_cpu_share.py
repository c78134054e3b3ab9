"""CPU share of an honest run next to a run whose 7 children each call ``setsid`` and spin (issue 17).

Each repeat runs the honest program (a 2 s busy loop that reports the CPU seconds it got per wall
second) alone, then next to the attack in a second worker, with every protection and with the seccomp
filter and the cgroup switched off (``Sandbox(_off=...)``). Prints one JSON line per case: compare
``honest_cpu_share_next_to_attack / honest_cpu_share_alone`` between the two. On a shared machine,
only the ratios within one repeat mean anything.

    PYTHONPATH=. python benchmarks/sandbox_cpu_share.py
"""

import json

from ladtrain.sandbox import Limits, Sandbox

HONEST = """
import time
t0 = time.monotonic(); c0 = time.process_time()
while time.monotonic() - t0 < 2.0:
    pass
print(round((time.process_time() - c0) / 2.0, 3))
"""
ATTACK = """
import os, time
for _ in range(7):
    if os.fork() == 0:
        try:
            os.setsid()
        except OSError:
            pass
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            pass
        os._exit(0)
t0 = time.monotonic()
while time.monotonic() - t0 < 3.0:
    pass
"""


def main() -> None:
    for _ in range(3):
        for off in [(), ("seccomp", "cgroup")]:
            box = Sandbox(Limits(wall_s=8.0), workers=2, _off=off)
            alone = float(box.run(HONEST).stdout.strip())
            beside = float(box.run_many([ATTACK, HONEST])[1].stdout.strip())
            print(json.dumps({"off": off, "honest_cpu_share_alone": alone,
                              "honest_cpu_share_next_to_attack": beside, "ratio": round(beside / alone, 2)}))


if __name__ == "__main__":
    main()
