"""Running reportrelay on one machine: emulated AWS, the job runner and the CLI's building blocks.

Every botocore session made in a process that imports this package (the CLI, the tests) shares one
loader of botocore's data files, set up here, before moto is imported by anything below. moto makes
sessions as it is imported (three, each decoding EC2's service file) and boto3 gets a new default session
at every mock start, whose first clients decoded the endpoint and service files again: about 0.1 s a
session and 50 ms a client. The files never change while the process runs, so they are read once.
"""

from __future__ import annotations

import threading

import botocore.loaders
import botocore.session

_loaders: dict[str | None, botocore.loaders.Loader] = {}
_loaders_lock = threading.Lock()


def _register_shared_data_loader(session: botocore.session.Session) -> None:
    def shared_loader() -> botocore.loaders.Loader:
        data_path = session.get_config_variable("data_path")
        with _loaders_lock:
            if data_path not in _loaders:
                _loaders[data_path] = botocore.loaders.create_loader(data_path)
            return _loaders[data_path]

    session._components.lazy_register_component("data_loader", shared_loader)


botocore.session.Session._register_data_loader = _register_shared_data_loader  # type: ignore[method-assign]
