"""A vLLM general plugin (entry point `vllm.general_plugins`) run in every server process.

vLLM's CPU attention picks its AMX kernel for bf16 whenever the CPU reports AMX tiles, but Linux
lets a process execute AMX instructions only after asking for the tile state (arch_prctl
ARCH_REQ_XCOMP_PERM); without it the first attention call dies with SIGILL. The permission does
not survive exec, and vLLM's CPU platform spawns its engine and worker processes, so the request
has to be made in each of them: vLLM loads general plugins in all of its processes.
"""

from __future__ import annotations


def request_amx_permission() -> bool:
    """Ask the kernel for AMX tile state where the CPU has it; True when AMX may now be used."""
    import torch

    if not torch.cpu._is_amx_tile_supported():
        return False
    return bool(torch.cpu._init_amx())
