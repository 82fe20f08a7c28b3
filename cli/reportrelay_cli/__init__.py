"""reportrelay on a person's machine: the ``reportrelay`` command, the local emulation and the simulators.

None of it runs in Lambda, and it is not in any Lambda bundle: the CLI talks to a deployed stack over its
job API, ``local`` runs the deployed shape on emulated AWS (moto), and ``sandbox`` serves the vendor
simulators written from the vendors' documents. It depends on ``reportrelay`` (functions/), never the
other way round.
"""
