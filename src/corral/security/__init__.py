"""Authentication and roles: API tokens (stored as hashes), the roles and the permission table, the first
admin token and its file, and the record of denied attempts.

Start reading at :mod:`corral.security.permissions` (who may do what, one table for the API and the
dashboard), then :mod:`corral.security.service` (:class:`~corral.security.service.Tokens`: make, check,
revoke) and :mod:`corral.security.bootstrap` (the admin token written to ``<CORRAL_HOME>/admin-token`` on
first start). The HTTP side (the middleware that looks every request's route up in the table) lives in
:mod:`corral.api.auth`; storage implements :class:`~corral.security.ports.TokenStore`.
"""
