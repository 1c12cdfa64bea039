"""Which Ray cluster a render uses, and connecting to it without a dashboard or usage reports.

ADDRESS is `auto` (the cluster this machine is part of), `HOST:PORT` (a head started with
`ray start --head`), `ray://HOST:10001` (Ray Client) or `local` (Ray started on this machine for the
render and stopped after it: one engine per GPU, or per CPU core without one).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import signal
import socket
import sys
import time

from pipeline.errors import BadInputError

log = logging.getLogger(__name__)

LOCAL = "local"
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # frames travel packed and a few at a time: this is plenty
CONNECT_TIMEOUT_S = 5.0
FATAL_SIGNALS = tuple(getattr(signal, name) for name in ("SIGSEGV", "SIGFPE", "SIGABRT", "SIGBUS", "SIGILL")
                      if hasattr(signal, name))
SIGACTION_BYTES = 512  # more than any libc's struct sigaction (152 bytes on glibc x86-64): kept opaque


def ray_available() -> bool:
    """Whether Ray can be imported (the `vdiff[cluster]` extra; the desktop bundle leaves it out)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def why_unavailable() -> str:
    return "Ray is not installed: install vdiff with the cluster extra (pip install 'vdiff[cluster]')"


def parse_address(text: str) -> str:
    """Check an address's form (not whether it answers); BadInputError with the accepted forms."""
    address = text.strip()
    if address in ("auto", LOCAL):
        return address
    host_port = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise BadInputError(f"cannot read the cluster address '{text}': use auto, local, HOST:PORT or ray://HOST:10001")
    return address


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a HOST:PORT or ray:// address; None for auto and local."""
    if address in ("auto", LOCAL):
        return None
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def check_reachable(address: str) -> None:
    """Fail at once, with one line, when nothing listens at the address (ray.init would retry for long)."""
    target = host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise BadInputError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start its head with "
            "`ray start --head` (docs/distributed.md)"
        ) from None


def connect(address: str) -> None:
    """ray.init for `address`. The caller calls disconnect() when the render ends."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never report usage over the network
    target = host_port(address)
    loopback = address == LOCAL or (target is not None and _is_loopback(target[0]))
    if loopback:
        keep_to_loopback()
    import ray

    check_reachable(address)
    if address != LOCAL:
        _use_token_if_any()
    if ray.is_initialized():
        disconnect()
    quiet = logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING  # Ray's connect lines with -v only
    try:
        with keeping_fatal_signal_handlers():
            _init(ray, address, loopback, quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BadInputError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    log.info("connected to Ray at %s: %s", address, ray.cluster_resources())


def _init(ray, address: str, loopback: bool, quiet: int) -> None:
    if address == LOCAL:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=quiet,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, _node_ip_address="127.0.0.1")
    elif address.startswith("ray://"):
        ray.init(address=address, log_to_driver=False, logging_level=quiet)
    else:
        options = {"_node_ip_address": "127.0.0.1"} if loopback else {}  # where a loopback head's raylet is
        try:
            ray.init(address=address, log_to_driver=False, logging_level=quiet, **options)
        except ConnectionError:  # a head that is still starting: its port answers before its raylet
            time.sleep(3.0)
            ray.init(address=address, log_to_driver=False, logging_level=quiet, **options)


@contextlib.contextmanager
def keeping_fatal_signal_handlers():
    """Give back the process's handlers of fatal signals after Ray's driver replaced them with its own,
    which writes to Ray's log, closed at shutdown: a native crash (Python's faulthandler, the self-test's)
    then died without a word, and a render process gave no traceback."""
    if os.name != "posix":
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    saved = {}
    for number in FATAL_SIGNALS:
        action = ctypes.create_string_buffer(SIGACTION_BYTES)
        if libc.sigaction(number, None, action) == 0:
            saved[number] = action
    try:
        yield
    finally:
        for number, action in saved.items():
            libc.sigaction(number, action, None)


def _use_token_if_any() -> None:
    """Send this machine's Ray token (~/.ray/auth_token, RAY_AUTH_TOKEN) to a head given by address, as
    Ray does for `auto`: a head started here after a `local` render has token authentication on."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return
    try:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def keep_to_loopback() -> None:
    """Make Ray give this machine's nodes 127.0.0.1, not the routable address it picks for a node
    (it replaces a loopback --node-ip-address with that one): a `local` cluster, or a driver of a
    head started on loopback, then listens and talks on loopback only."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray's own switch to a loopback-only node
    ray_constants = sys.modules.get("ray._private.ray_constants")
    if ray_constants is not None:  # read at import: set it on the module too
        ray_constants.ENABLE_RAY_CLUSTER = False


def disconnect() -> None:
    """Leave the cluster (a `local` one stops with it); the workers' actors end with the driver."""
    import ray

    if ray.is_initialized():
        with keeping_fatal_signal_handlers():
            ray.shutdown()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
