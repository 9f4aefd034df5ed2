"""Helpers for testing corral and code built on it; they ship with the package.

- :mod:`corral.testing.postgres`: a fresh PostgreSQL database per test
  session, on a server named by ``CORRAL_TEST_POSTGRES_URL`` or on a private
  throwaway server started from the installed PostgreSQL binaries.
- :mod:`corral.testing.auth`: the admin token's header, and tokens with any role, for tests that call a
  server with authentication on.

Nothing here is imported by corral itself, and nothing imports pytest until
it is needed, so the package stays usable without test dependencies.
"""
