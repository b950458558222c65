"""A moto server with the sandbox's patches, in its own process (the test suite's `sandbox_server`).

moto keeps its state in process-wide globals and `mock_aws` resets them, so a server shared by a
whole test session must live in another process. Run: python -m portal.sandbox.moto_process --port N
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

from moto.server import ThreadedMotoServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings_test")
    import django

    django.setup()
    # The patches read the simulator's state through the ORM: imported once Django is set up.
    from portal.sandbox.patches import install_moto_patches

    install_moto_patches()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
