"""The permission table: what each role holds, and the tables docs/security.md publishes are the code's."""

from __future__ import annotations

import re
from pathlib import Path

from corral.security.entities import Role
from corral.security.permissions import (
    DESCRIPTIONS,
    MANAGEMENT,
    ROLE_PERMISSIONS,
    ROUTES,
    Permission,
    allows,
    markdown,
    permission_for,
    roles_with,
)

DOC = Path(__file__).parents[3] / "docs" / "security.md"


def test_docs_publish_the_table_the_code_enforces() -> None:
    text = DOC.read_text()
    found = re.search(r"<!-- permissions:start -->\n(.*?)<!-- permissions:end -->", text, re.DOTALL)
    assert found, "docs/security.md lost its <!-- permissions:start/end --> markers"
    assert found.group(1) == markdown(), (
        "docs/security.md does not show the permission table in corral.security.permissions; "
        "regenerate it with: python -m corral.security.permissions"
    )
    for role in Role:
        assert f"`{role.value}`" in text or role.value in text


def test_roles_hold_what_the_design_says() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    assert ROLE_PERMISSIONS[Role.AUDITOR] == {Permission.AUTHENTICATED, Permission.AUDIT}
    predictor = ROLE_PERMISSIONS[Role.PREDICTOR]
    assert Permission.PREDICT in predictor and Permission.FEEDBACK in predictor and Permission.READ not in predictor
    for role in Role:
        assert Permission.AUTHENTICATED in ROLE_PERMISSIONS[role]
        assert Permission.ADMIN not in ROLE_PERMISSIONS[role] or role is Role.ADMIN
        assert Permission.AUDIT not in ROLE_PERMISSIONS[role] or role in (Role.AUDITOR, Role.ADMIN)
    assert (
        Permission.DEPLOY in ROLE_PERMISSIONS[Role.DEPLOYER] and Permission.PUBLISH in ROLE_PERMISSIONS[Role.PUBLISHER]
    )
    assert roles_with(Permission.DEPLOY) == (Role.DEPLOYER, Role.ADMIN)
    assert all(allows(r, Permission.PUBLIC) for r in Role)
    assert set(DESCRIPTIONS) == set(Permission)
    assert MANAGEMENT.isdisjoint({Permission.PUBLIC, Permission.READ, Permission.METADATA, Permission.PREDICT})


def test_lookups_fold_head_into_get_and_know_nothing_else() -> None:
    assert permission_for("HEAD", "/v1/models") is Permission.READ
    assert permission_for("get", "/v1/models") is Permission.READ
    assert permission_for("POST", "/v1/models") is None
    public = sorted(route for route, p in ROUTES.items() if p is Permission.PUBLIC)
    assert public == [
        ("GET", "/ui/login"),
        ("GET", "/ui/static/{path}"),
        ("GET", "/v2/health/live"),
        ("GET", "/v2/health/ready"),
        ("POST", "/ui/login"),
        ("POST", "/ui/logout"),
    ]
    assert all(method in ("GET", "POST", "PUT", "PATCH", "DELETE") for method, _ in ROUTES)
