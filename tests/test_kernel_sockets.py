"""The notebook runner's kernels use private IPC sockets: two runs started at once cannot share them.

jupyter_client's default IPC prefix is "kernel-ipc" in the working directory, numbered from the first
free file. Two runs that choose their numbers before either kernel has bound (the test suite's smoke and
paper-profile runs in parallel, or ./run_all.sh beside a papermill rerun) took the same sockets and read
each other's messages: "Invalid Signature" and a failed run (CI, stop 39)."""
import asyncio
import os
from pathlib import Path

from mars_lib.pipeline.runner import _ipc_kernel_manager


def _sockets(km) -> set[str]:
    info = km.get_connection_info()
    return {f"{info['ip']}-{info[k]}" for k in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")}


def test_two_kernels_set_up_at_once_get_disjoint_sockets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # both in one working directory, as two runs of notebooks/
    manager = _ipc_kernel_manager()
    a, b = manager(kernel_name="python3"), manager(kernel_name="python3")
    a.write_connection_file()
    b.write_connection_file()                        # before either kernel exists: the race, made certain
    try:
        sa, sb = _sockets(a), _sockets(b)
        assert len(sa) == len(sb) == 5
        assert not sa & sb
        assert all(os.path.isabs(s) for s in sa | sb)
        assert not list(tmp_path.iterdir())          # nothing written into the working directory
    finally:
        for km in (a, b):
            asyncio.run(km._async_cleanup_resources())     # removes the connection file and socket folder


def test_kernel_runs_and_its_socket_directory_is_removed(tmp_path):
    km = _ipc_kernel_manager()(kernel_name="python3")

    async def run() -> dict:
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=240)
            reply = await kc.execute_interactive("x = 6 * 7", timeout=60)
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=False)
        return reply

    reply = asyncio.run(run())
    assert reply["content"]["status"] == "ok"
    assert not Path(km.ip).parent.exists()
