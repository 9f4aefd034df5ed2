"""Roles, permissions and the route table: the one place that says who may do what.

Every HTTP route of a corral server (the API and the dashboard) is listed in :data:`ROUTES` with the one
:class:`Permission` it needs; each :class:`~corral.security.entities.Role` holds a set of permissions
(:data:`ROLE_PERMISSIONS`). The server looks a request's route (method and path template) up here and
refuses what the table does not allow, including any route missing from it (default deny); a test fails
when a route exists without an entry, or an entry without a route. ``docs/security.md`` publishes
:func:`markdown` (a test checks the two agree); regenerate it with
``python -m corral.security.permissions``.
"""

from __future__ import annotations

from enum import StrEnum

from corral.security.entities import Role


class Permission(StrEnum):
    """What a route needs."""

    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    METADATA = "metadata"
    PREDICT = "predict"
    FEEDBACK = "feedback"
    READ = "read"
    PUBLISH = "publish"
    DEPLOY = "deploy"
    AUDIT = "audit"
    ADMIN = "admin"


DESCRIPTIONS: dict[Permission, str] = {
    Permission.PUBLIC: "no token: liveness and readiness, the dashboard's sign-in page and static files",
    Permission.AUTHENTICATED: "any valid token: who am I",
    Permission.METADATA: "server and model metadata and readiness of the Open Inference Protocol (what clients "
    "check before they predict)",
    Permission.PREDICT: "predictions: V2 infer, the JSON predict, MLflow-style invocations",
    Permission.FEEDBACK: "ground-truth labels for recorded predictions",
    Permission.READ: "models, deployments, comparisons, reports, monitoring, alerts, pipelines and runs, "
    "Prometheus metrics, the OpenAPI document and the dashboard's pages but the audit log's",
    Permission.PUBLISH: "register models (no HTTP route registers models yet: publishers use the SDK or CLI "
    "on the database; the role is ready for the registration API)",
    Permission.DEPLOY: "promote, roll back, shadows, splits and canaries, guards, deployments created, changed, "
    "loaded, unloaded or deleted, monitoring and alert configuration, acknowledging alerts, pipeline runs",
    Permission.AUDIT: "the prediction log's records, search, verification, explanations and replays, the "
    "signing key's public half",
    Permission.ADMIN: "API tokens (create, list, revoke) and the record of denied attempts",
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.AUTHENTICATED, Permission.METADATA, Permission.READ}),
    Role.PREDICTOR: frozenset({Permission.AUTHENTICATED, Permission.METADATA, Permission.PREDICT, Permission.FEEDBACK}),
    Role.PUBLISHER: frozenset({Permission.AUTHENTICATED, Permission.METADATA, Permission.READ, Permission.PUBLISH}),
    Role.DEPLOYER: frozenset({Permission.AUTHENTICATED, Permission.METADATA, Permission.READ, Permission.DEPLOY}),
    Role.AUDITOR: frozenset({Permission.AUTHENTICATED, Permission.AUDIT}),
    Role.ADMIN: frozenset(Permission),
}
"""The permissions each role holds. ``public`` needs no token at all."""

MANAGEMENT: frozenset[Permission] = frozenset(
    {Permission.PUBLISH, Permission.DEPLOY, Permission.AUDIT, Permission.ADMIN}
)
"""Permissions whose refused attempts are recorded (everything but health, reads, metadata and predictions)."""

_P = Permission
ROUTES: dict[tuple[str, str], Permission] = {
    # health (no token) and the Open Inference Protocol's metadata
    ("GET", "/v2/health/live"): _P.PUBLIC,
    ("GET", "/v2/health/ready"): _P.PUBLIC,
    ("GET", "/v2"): _P.METADATA,
    ("GET", "/v2/models/{name}"): _P.METADATA,
    ("GET", "/v2/models/{name}/versions/{version}"): _P.METADATA,
    ("GET", "/v2/models/{name}/ready"): _P.METADATA,
    ("GET", "/v2/models/{name}/versions/{version}/ready"): _P.METADATA,
    ("POST", "/v2/repository/index"): _P.READ,
    ("POST", "/v2/repository/models/{name}/load"): _P.DEPLOY,
    ("POST", "/v2/repository/models/{name}/unload"): _P.DEPLOY,
    # predictions and feedback
    ("POST", "/v2/models/{name}/infer"): _P.PREDICT,
    ("POST", "/v2/models/{name}/versions/{version}/infer"): _P.PREDICT,
    ("POST", "/v1/deployments/{name}/predict"): _P.PREDICT,
    ("POST", "/v1/deployments/{name}/invocations"): _P.PREDICT,
    ("POST", "/invocations"): _P.PREDICT,
    ("POST", "/v1/feedback"): _P.FEEDBACK,
    # models and deployments
    ("GET", "/v1/models"): _P.READ,
    ("GET", "/v1/models/{name}"): _P.READ,
    ("GET", "/v1/models/{name}/versions/{version}/report"): _P.READ,
    ("PUT", "/v1/models/{name}/aliases/{alias}"): _P.DEPLOY,
    ("POST", "/v1/models/{name}/aliases/{alias}/rollback"): _P.DEPLOY,
    ("GET", "/v1/deployments"): _P.READ,
    ("POST", "/v1/deployments"): _P.DEPLOY,
    ("GET", "/v1/deployments/{name}"): _P.READ,
    ("PATCH", "/v1/deployments/{name}"): _P.DEPLOY,
    ("DELETE", "/v1/deployments/{name}"): _P.DEPLOY,
    ("PUT", "/v1/deployments/{name}/members"): _P.DEPLOY,
    ("DELETE", "/v1/deployments/{name}/members/{model}/{version}"): _P.DEPLOY,
    ("PUT", "/v1/deployments/{name}/guard"): _P.DEPLOY,
    ("POST", "/v1/deployments/{name}/rollback"): _P.DEPLOY,
    ("GET", "/v1/deployments/{name}/comparison"): _P.READ,
    # monitoring and alerts
    ("GET", "/v1/deployments/{name}/monitoring"): _P.READ,
    ("GET", "/v1/deployments/{name}/monitoring/history"): _P.READ,
    ("GET", "/v1/deployments/{name}/monitoring/histograms"): _P.READ,
    ("GET", "/v1/deployments/{name}/monitoring/config"): _P.READ,
    ("PUT", "/v1/deployments/{name}/monitoring/config"): _P.DEPLOY,
    ("GET", "/v1/alerts"): _P.READ,
    ("GET", "/v1/alerts/{alert_id}"): _P.READ,
    ("POST", "/v1/alerts/{alert_id}/ack"): _P.DEPLOY,
    ("GET", "/v1/deployments/{name}/alert-rules"): _P.READ,
    ("PUT", "/v1/deployments/{name}/alert-rules/{rule}"): _P.DEPLOY,
    ("DELETE", "/v1/deployments/{name}/alert-rules/{rule}"): _P.DEPLOY,
    # the audit log
    ("GET", "/v1/predictions/{prediction_id}"): _P.AUDIT,
    ("GET", "/v1/audit/predictions"): _P.AUDIT,
    ("GET", "/v1/audit/predictions/{prediction_id}"): _P.AUDIT,
    ("GET", "/v1/audit/predictions/{prediction_id}/explanation"): _P.AUDIT,
    ("POST", "/v1/audit/predictions/{prediction_id}/replay"): _P.AUDIT,
    ("GET", "/v1/audit/verify"): _P.AUDIT,
    ("GET", "/v1/audit/public-key"): _P.AUDIT,
    # retraining pipelines
    ("GET", "/v1/pipelines"): _P.READ,
    ("GET", "/v1/pipelines/{name}"): _P.READ,
    ("POST", "/v1/pipelines/{name}/runs"): _P.DEPLOY,
    ("GET", "/v1/runs"): _P.READ,
    ("GET", "/v1/runs/{run_id}"): _P.READ,
    ("GET", "/v1/runs/{run_id}/logs"): _P.READ,
    # tokens and denials
    ("GET", "/v1/whoami"): _P.AUTHENTICATED,
    ("GET", "/v1/tokens"): _P.ADMIN,
    ("POST", "/v1/tokens"): _P.ADMIN,
    ("DELETE", "/v1/tokens/{token}"): _P.ADMIN,
    ("GET", "/v1/denials"): _P.ADMIN,
    # operations and documents
    ("GET", "/metrics"): _P.READ,
    ("GET", "/openapi.json"): _P.READ,
    ("GET", "/docs"): _P.READ,
    ("GET", "/docs/oauth2-redirect"): _P.READ,
    ("GET", "/redoc"): _P.READ,
    # the dashboard
    ("GET", "/ui/login"): _P.PUBLIC,
    ("POST", "/ui/login"): _P.PUBLIC,
    ("POST", "/ui/logout"): _P.PUBLIC,
    ("GET", "/ui/static/{path}"): _P.PUBLIC,
    ("GET", "/ui"): _P.READ,
    ("GET", "/ui/"): _P.READ,
    ("GET", "/ui/fragments/overview"): _P.READ,
    ("GET", "/ui/deployments/{name}"): _P.READ,
    ("GET", "/ui/fragments/deployments/{name}/versions"): _P.READ,
    ("GET", "/ui/deployments/{name}/drift"): _P.READ,
    ("POST", "/ui/deployments/{name}/promote"): _P.DEPLOY,
    ("POST", "/ui/deployments/{name}/rollback"): _P.DEPLOY,
    ("POST", "/ui/deployments/{name}/remove"): _P.DEPLOY,
    ("GET", "/ui/models"): _P.READ,
    ("GET", "/ui/models/{name}/{version}"): _P.READ,
    ("GET", "/ui/pipelines"): _P.READ,
    ("POST", "/ui/pipelines/{name}/run"): _P.DEPLOY,
    ("GET", "/ui/runs/{run_id}"): _P.READ,
    ("GET", "/ui/audit"): _P.AUDIT,
    ("GET", "/ui/fragments/audit/verify"): _P.AUDIT,
    ("GET", "/ui/audit/{prediction_id}"): _P.AUDIT,
    ("POST", "/ui/audit/{prediction_id}/explain"): _P.AUDIT,
    ("POST", "/ui/audit/{prediction_id}/replay"): _P.AUDIT,
}
"""(method, path template) -> the permission it needs. ``HEAD`` is looked up as ``GET``."""


def permission_for(method: str, route: str) -> Permission | None:
    """The permission ``method`` on the route with path template ``route`` needs; ``None`` when the table has
    no entry (the server then refuses the request)."""
    method = method.upper()
    return ROUTES.get(("GET" if method == "HEAD" else method, route))


def roles_with(permission: Permission) -> tuple[Role, ...]:
    """The roles holding ``permission``, in :class:`Role` order (every role for ``public``)."""
    return tuple(r for r in Role if permission is Permission.PUBLIC or permission in ROLE_PERMISSIONS[r])


def allows(role: Role, permission: Permission) -> bool:
    """Whether a token with ``role`` may do what ``permission`` guards."""
    return permission is Permission.PUBLIC or permission in ROLE_PERMISSIONS[role]


def markdown() -> str:
    """The permission tables as ``docs/security.md`` publishes them: roles against permissions, then every
    route with what it needs and who may call it."""
    roles = list(Role)
    lines = [
        "| permission | what it covers | " + " | ".join(r.value for r in roles) + " |",
        "|---|---|" + "---|" * len(roles),
    ]
    for permission in Permission:
        marks = " | ".join("✓" if allows(r, permission) else "" for r in roles)
        lines.append(f"| `{permission.value}` | {DESCRIPTIONS[permission]} | {marks} |")
    lines += ["", "| method | route | permission | roles |", "|---|---|---|---|"]
    for (method, route), permission in sorted(ROUTES.items(), key=lambda item: (item[0][1], item[0][0])):
        who = (
            "anyone, no token"
            if permission is Permission.PUBLIC
            else ", ".join(r.value for r in roles_with(permission))
        )
        lines.append(f"| {method} | `{route}` | `{permission.value}` | {who} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - regenerates the tables in docs/security.md
    print(markdown(), end="")
