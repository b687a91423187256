"""Which way the plug-in reaches the daemon: directly where GIMP's Python imports pyzmq,
through the bridge where it cannot. Both links have the same methods."""

from __future__ import annotations

from .bridge_client import BridgeLink, Show
from .errors import PluginError
from .settings import InstallSettings


def pyzmq_problem() -> str | None:
    """Why pyzmq cannot be used here, or None. Any failure counts: a pyzmq built for another
    interpreter raises ImportError with a name that is not "zmq", or worse."""
    try:
        import zmq  # noqa: F401
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def open_link(connection_file: str, settings: InstallSettings | None, show: Show | None = None):
    """A DirectLink or a BridgeLink to a daemon that answers (started if need be)."""
    problem = pyzmq_problem()
    if problem is None:
        from .daemon_link import DirectLink

        return DirectLink.open(connection_file, settings, show)
    if settings is None or not settings.bridge_command:
        raise PluginError(
            f"GIMP's Python cannot import pyzmq ({problem}), and this plug-in was installed "
            f"without the bridge that stands in for it: run `neural-style install-gimp-plugin` "
            f"from the installation that runs the style daemon, then restart GIMP."
        )
    return BridgeLink.open(
        settings.bridge_command, connection_file, settings.start_command or None, show
    )
