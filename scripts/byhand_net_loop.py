#!/usr/bin/env python3
"""The by-hand baseline for bundles with interfaces and bindNS: what an init would do without
lkinit, per bundle: RUNTIME create; `ip link add` a veth pair in the root namespace and move
one end in; bind the container's net namespace on a file; RUNTIME start; wait for the
container as a child subreaper; RUNTIME delete. Container output goes to log files.

usage: byhand_net_loop.py RUNTIME ROOT BUNDLES_DIR NSDIR LOGDIR [PEER_PREFIX]
(the host end of each pair is PEER_PREFIX + the bundle's name; default `h`)
"""
import ctypes
import os
import subprocess
import sys

rt, root, bundles, nsdir, logdir = sys.argv[1:6]
prefix = sys.argv[6] if len(sys.argv) > 6 else "h"
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("prctl failed")
os.makedirs(nsdir, exist_ok=True)
os.makedirs(logdir, exist_ok=True)


def run(*args, **kw):
    subprocess.run(args, check=True, **kw)


for name in sorted(os.listdir(bundles)):
    b = os.path.join(bundles, name)
    pidfile = os.path.join(logdir, name + ".pid")
    with open(os.path.join(logdir, name + ".out.log"), "ab") as out, \
            open(os.path.join(logdir, name + ".log"), "ab") as err:
        run(rt, "--root", root, "create", "--bundle", b, "--pid-file", pidfile, name,
            stdout=out, stderr=err)
    pid = int(open(pidfile).read())
    peer = prefix + name
    run("ip", "link", "add", "eth1", "type", "veth", "peer", "name", peer)
    run("ip", "link", "set", "eth1", "netns", str(pid))
    nsfile = os.path.join(nsdir, name)
    open(nsfile, "w").close()
    run("mount", "--bind", "/proc/%d/ns/net" % pid, nsfile)
    run(rt, "--root", root, "start", name)
    os.waitpid(pid, 0)
    run(rt, "--root", root, "delete", name)
