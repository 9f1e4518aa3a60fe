"""kubesim: a Kubernetes API simulator for tests, demos and benchmarks.

Public API:

- :func:`running` — async context manager serving a simulated cluster; yields a
  :class:`SimServer` (``.url``, ``.sim`` the in-process state, ``.restart()``).
- :func:`running_clusters` — many clusters from one process, a port each; yields
  their servers in order.
- :class:`SimConfig` — bookmark interval, history window, continue-token TTL...
- :mod:`kubesim.objects` — realistic object builders (``make_pod`` ...).
- :class:`kubesim.load.LoadGenerator` — realistic writes over HTTP.
- :func:`kubesim.kubeconfig.write_kubeconfig` — a kubeconfig for a server URL.
"""

from kubesim.clusters import running_clusters
from kubesim.server import SimServer, running
from kubesim.simulator import SimConfig, Simulator

__all__ = ["SimConfig", "SimServer", "Simulator", "running", "running_clusters"]
