"""A rank that fails in one of three ways (argv[1]); the others wait in a collective. The job must
end with a non-zero status within seconds. Run by tests/test_distributed.py under mpiexec."""

import datetime
import os
import signal
import sys
import time

import chainrule as cr
import chainrule.distributed as dist

how = sys.argv[1]
dist.init_process_group(timeout=datetime.timedelta(seconds=3))
if dist.get_rank() == 1:
    if how == "raises":
        raise ValueError("rank 1 hit a bug")
    if how == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "skips":
        time.sleep(120)  # never reaches the collective
t = cr.ones(4)
dist.all_reduce(t)
print("the collective finished without rank 1", flush=True)
