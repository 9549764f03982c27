"""Landlock (Linux ≥ 5.13): a process confines its own filesystem access, no privilege needed.

The sandbox applies it in the child between fork and exec when no mount namespace hides the
host (``unshare`` and weak modes): the command may read and execute the system folders, read
and write its workspace and a private temporary folder, and nothing else — so the home (memory
key, database) cannot be opened. Where the kernel's Landlock ABI allows it (4+), TCP connect
and bind are denied too, and (6+) signals to processes outside the sandbox.

Only ``ctypes`` and the three system calls; ``restrict`` runs in the forked child and must not
allocate much or take locks, so rules are prepared in the parent (``Ruleset.prepare``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Ruleset", "abi_version"]

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # same numbers on x86_64 and arm64
_VERSION_FLAG = 1
_RULE_PATH_BENEATH, _PR_SET_NO_NEW_PRIVS = 1, 38

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_ALL_V1 = (1 << 13) - 1
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_ONLY = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@functools.cache
def abi_version() -> int:
    """The kernel's Landlock ABI version (0: not available)."""
    try:
        version = _libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION_FLAG))
    except (AttributeError, OSError):
        return 0
    return max(int(version), 0)


def _handled_fs(abi: int) -> int:
    mask = _ALL_V1
    if abi >= 2:
        mask |= _REFER
    if abi >= 3:
        mask |= _TRUNCATE
    if abi >= 5:
        mask |= _IOCTL_DEV
    return mask


@dataclass
class Ruleset:
    """Paths the command may read (and execute) and paths it may also write."""

    read: tuple[str, ...]
    write: tuple[str, ...]
    _fd: int = -1

    def prepare(self) -> None:
        """Create the ruleset in the parent (an fd the child inherits); raises ``OSError``."""
        abi = abi_version()
        if abi < 1:
            raise OSError("Landlock is not available in this kernel")
        fs = _handled_fs(abi)
        attr = struct.pack("QQQ", fs, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
                           _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if abi >= 6 else 0)
        size = 8 if abi < 4 else 16 if abi < 6 else 24
        buffer = ctypes.create_string_buffer(attr[:size], size)
        fd = _libc.syscall(_CREATE_RULESET, buffer, ctypes.c_size_t(size), ctypes.c_uint32(0))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
        self._fd = int(fd)
        try:
            self._allow(self.read, _EXECUTE | _READ_FILE | _READ_DIR, fs)
            self._allow(self.write, fs, fs)
        except OSError:
            self.close()
            raise

    def _allow(self, paths: Iterable[str], access: int, handled: int) -> None:
        for path in paths:
            try:
                target = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # absent on this machine: nothing to allow
            try:
                rights = access & handled
                if not os.path.isdir(path):
                    rights &= _FILE_ONLY
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, target), 12)
                if _libc.syscall(_ADD_RULE, ctypes.c_int(self._fd), ctypes.c_int(_RULE_PATH_BENEATH), rule,
                                 ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(target)

    def restrict(self) -> None:
        """In the child: no new privileges, then enforce the ruleset on this process and its children."""
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
        if _libc.syscall(_RESTRICT_SELF, ctypes.c_int(self._fd), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
