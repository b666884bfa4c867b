"""The vLLM plugin that lets server processes use AMX (without it vLLM's bf16 CPU attention hits SIGILL)."""

import platform
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from servesweep.vllm_plugin import request_amx_permission

# Asks, in a fresh process, which extended states (XCR0 bits) it may use before and after the plugin.
_PROBE = """
import ctypes, torch
from servesweep.vllm_plugin import request_amx_permission
libc = ctypes.CDLL(None, use_errno=True)
def permitted():
    mask = ctypes.c_uint64(0)
    assert libc.syscall(158, 0x1022, ctypes.byref(mask)) == 0  # arch_prctl(ARCH_GET_XCOMP_PERM)
    return mask.value
XTILEDATA = 1 << 18
before = permitted() & XTILEDATA
granted = request_amx_permission()
print(torch.cpu._is_amx_tile_supported(), bool(before), granted, bool(permitted() & XTILEDATA))
"""


def test_registered_as_a_vllm_general_plugin():
    plugins = {ep.name: ep for ep in entry_points(group="vllm.general_plugins")}
    assert plugins["servesweep_amx"].load() is request_amx_permission


@pytest.mark.skipif(platform.machine() != "x86_64", reason="AMX and arch_prctl(158) are x86-64's")
def test_a_fresh_process_may_use_amx_after_the_plugin_ran():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout.split()
    has_amx, before, granted, after = (word == "True" for word in out)
    assert not before  # exec clears the permission: each spawned vLLM process must ask again
    assert granted == after == has_amx
