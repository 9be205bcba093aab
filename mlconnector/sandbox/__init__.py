"""Emulators of the vendor systems: Starlette apps that speak each vendor's documented wire protocol.

The sandbox is the other party. It imports nothing from the client side of the package
(config, secrets, systems, engine, cli), so it cannot agree with the client by accident.
"""
