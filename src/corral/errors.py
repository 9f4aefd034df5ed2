"""The corral error tree.

Every error corral raises on purpose is a :class:`CorralError`, so callers can
catch one type. Messages name what was wrong and, where possible, what to do.
No HTTP status codes live here: the API layer maps these types to responses.

::

    CorralError
    ├── ConfigurationError          settings or URLs that cannot work
    ├── InvalidNameError            a model name or alias that is not allowed
    ├── InvalidReferenceError       "fraud@champion" / "fraud/3" that does not parse
    ├── DataFileError               a data file that is missing, of an unknown format, or unreadable
    ├── SchemaError                 data that does not fit a signature
    │   ├── SignatureMismatchError  training data whose columns do not match the model
    │   └── ProtocolError           an inference request (or response) that breaks the Open Inference Protocol
    │       └── InvalidJSONError    a request body that is not strict JSON (syntax, UTF-8, NaN, duplicate keys,
    │                               numbers out of range, nesting too deep)
    ├── NotFoundError
    │   ├── ModelNotFoundError
    │   ├── VersionNotFoundError
    │   ├── AliasNotFoundError
    │   ├── ArtifactNotFoundError
    │   ├── DeploymentNotFoundError
    │   ├── PredictionNotFoundError no recorded prediction has this id
    │   └── TokenNotFoundError      no API token has this name or id
    ├── NotReadyError               a deployment has no loaded model (yet, or any more)
    │   └── WorkerCrashedError      a model's worker process died (or is restarting) while answering
    ├── ModelTimeoutError           a model took longer than its deployment's request timeout
    ├── OverloadedError             a deployment's concurrency and queue are full; retry after a while
    ├── LimitExceededError          a request over a size or row limit
    ├── AlreadyExistsError
    ├── ConflictError               the state changed under the request (retry may help)
    ├── VersionInUseError           delete/archive refused: an alias or a prediction uses it
    ├── VersionArchivedError        an archived version cannot take an alias
    ├── RollbackError               nothing to roll back to
    ├── FlavorError
    │   ├── UnknownFlavorError      no runtime for the flavor or the model object
    │   └── ModelLoadError          the artifact exists but cannot be turned into a model
    │       ├── UntrustedArtifactError  pickle or unknown skops types without trust
    │       ├── UnsafeArtifactError     an artifact reaching outside its folder (archive members, ONNX external
    │       │                           data), over the archive limits, or whose bytes are not what it claims
    │       ├── ArtifactSignatureError  a signature that does not verify, or none where the profile requires one
    │       └── EnvironmentBuildError   a model's own environment could not be created (names the requirement)
    ├── ArtifactIntegrityError      stored bytes do not match their SHA-256
    ├── RegistrationError           a model could not be registered (nothing was written)
    ├── MonitoringError
    │   ├── UnknownDetectorError    no drift detector has this name
    │   ├── DriftInputError         distributions a drift detector cannot compare (kind, bins, no values)
    │   ├── FeedbackError           a label for an unknown prediction, of the wrong type, or a conflicting relabel
    │   └── AlertError              an alert rule or channel that cannot work (unknown metric, bad URL)
    │       └── DeliveryError       a channel could not deliver a notification (retryable or not)
    ├── AuthenticationError         no API token, or one that is unknown, expired or revoked
    ├── PermissionDeniedError       a valid token whose role lacks the permission (names the roles that have it)
    └── StoreError                  the database or artifact store failed or is unusable
"""

from __future__ import annotations


class CorralError(Exception):
    """Base class of every error corral raises on purpose."""


class ConfigurationError(CorralError):
    """Settings, URLs or options that cannot work together."""


class InvalidNameError(CorralError, ValueError):
    """A model name or alias breaks the naming rules."""


class InvalidReferenceError(CorralError, ValueError):
    """A model reference such as ``fraud@champion`` or ``fraud/3`` does not parse."""


class DataFileError(CorralError, ValueError):
    """A data file (CSV, Parquet) that is missing, has an unknown format, or cannot be read; the message names it."""


class SchemaError(CorralError, ValueError):
    """Data does not fit a signature: missing columns, wrong types, bad values.

    ``field`` names the one feature at fault when there is one (monitoring counts it as a type violation).
    """

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SignatureMismatchError(SchemaError):
    """Training data whose columns do not match what the model was fitted on."""


class ProtocolError(SchemaError):
    """An Open Inference Protocol (V2) request or response is malformed.

    Bad JSON, binary sizes that do not add up, unknown datatypes, data that does
    not fit its shape or datatype; the message names the tensor.
    """


class InvalidJSONError(ProtocolError):
    """A request body (or a binary request's JSON header) that is not strict JSON.

    Not UTF-8, a syntax error, ``NaN``/``Infinity``, a number beyond a 64-bit float's range, an object with a
    key given twice, or arrays and objects nested deeper than the server allows; the message says which.
    """


class NotFoundError(CorralError, LookupError):
    """Something asked for does not exist."""


class ModelNotFoundError(NotFoundError):
    """No registered model has this name."""


class VersionNotFoundError(NotFoundError):
    """The model exists but not this version."""


class AliasNotFoundError(NotFoundError):
    """The model has no such alias."""


class ArtifactNotFoundError(NotFoundError):
    """The artifact store has no blob with this hash."""


class DeploymentNotFoundError(NotFoundError):
    """No deployment has this name."""


class NotReadyError(CorralError):
    """A deployment exists but has no loaded model to answer with."""


class WorkerCrashedError(NotReadyError):
    """A model's worker process exited or was killed while answering, or is waiting to restart.

    Requests it held fail with this error (never hang); the worker is restarted with backoff.
    """


class ModelTimeoutError(CorralError):
    """A model did not answer within its deployment's request timeout (the message names the deployment)."""


class OverloadedError(CorralError):
    """A deployment is at its concurrency limit and its queue is full.

    ``retry_after`` is the number of seconds a client should wait before trying again.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LimitExceededError(CorralError, ValueError):
    """A request is over a configured limit (body size, rows)."""


class AlreadyExistsError(CorralError):
    """A unique thing was created twice."""


class ConflictError(CorralError):
    """The stored state changed between reading and writing; retrying may succeed."""


class VersionInUseError(CorralError):
    """A version is still used (by an alias or a stored prediction) and cannot go."""


class VersionArchivedError(CorralError):
    """An archived version cannot be served or take an alias until restored."""


class RollbackError(CorralError):
    """An alias has no earlier version to move back to."""


class FlavorError(CorralError):
    """Problems with a model framework (flavor)."""


class UnknownFlavorError(FlavorError, ValueError):
    """No runtime knows this flavor name or this kind of model object."""


class ModelLoadError(FlavorError):
    """An artifact is present and intact but cannot be loaded as a model."""


class UntrustedArtifactError(ModelLoadError):
    """Loading would run code from the artifact; it needs explicit trust."""


class UnsafeArtifactError(ModelLoadError):
    """An artifact refused before anything in it is used.

    Archive members with absolute paths, ``..``, links or devices, archives over the size or member limits,
    ONNX external data outside the model's folder, or a file whose bytes are not the format it claims to be.
    Nothing is written when it is raised.
    """


class ArtifactSignatureError(ModelLoadError):
    """A version's artifact signature does not verify, is by an unknown key, or is missing where required."""


class EnvironmentBuildError(ModelLoadError):
    """A model version's own virtual environment could not be created; the message names the requirement."""


class ArtifactIntegrityError(CorralError):
    """Stored bytes do not hash to the SHA-256 they were stored under."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class RegistrationError(CorralError):
    """A model version could not be registered; nothing was recorded."""


class MonitoringError(CorralError):
    """Problems with drift detection and production monitoring."""


class UnknownDetectorError(MonitoringError, ValueError):
    """No drift detector is registered under this name; the message lists the known ones."""


class DriftInputError(MonitoringError, ValueError):
    """A drift detector cannot compare these distributions.

    The wrong feature kind for the detector, bins that do not line up, binned
    data for a detector that needs rows, or a side with no values at all.
    """


class FeedbackError(MonitoringError, ValueError):
    """Feedback that cannot be taken: an unknown prediction id, a label of the wrong type, or a different
    label for a prediction that already has one."""


class AlertError(MonitoringError, ValueError):
    """An alert rule or channel that cannot work: an unknown metric, a bad threshold, a malformed URL."""


class DeliveryError(AlertError):
    """A channel failed to deliver a notification.

    ``retryable`` says whether trying again later may help (a timeout, a refused
    connection, a 5xx or 429) or not (a 4xx, a rejected recipient).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class PredictionNotFoundError(NotFoundError):
    """No recorded prediction has this id."""


class TokenNotFoundError(NotFoundError):
    """No API token has this name or id."""


class AuthenticationError(CorralError):
    """A request carried no API token, or one that is unknown, expired or revoked.

    ``code`` says which: ``unauthenticated`` (none sent), ``invalid_token``, ``token_expired`` or
    ``token_revoked``.
    """

    def __init__(self, message: str, *, code: str = "invalid_token") -> None:
        super().__init__(message)
        self.code = code


class PermissionDeniedError(CorralError):
    """A valid token whose role does not hold the permission an action needs.

    ``permission`` is the permission needed; ``roles`` the roles that hold it.
    """

    def __init__(self, message: str, *, permission: str = "", roles: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.permission = permission
        self.roles = roles


class StoreError(CorralError):
    """The database or the artifact store failed or cannot be used.

    ``fatal`` marks a failure after which the store's durability is in doubt (an I/O error during a
    commit): the prediction log stops taking records instead of retrying.
    """

    def __init__(self, message: str = "", *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


__all__ = [
    "AlertError",
    "AliasNotFoundError",
    "AlreadyExistsError",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "ArtifactSignatureError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "CorralError",
    "DataFileError",
    "DeliveryError",
    "DeploymentNotFoundError",
    "DriftInputError",
    "EnvironmentBuildError",
    "FeedbackError",
    "FlavorError",
    "InvalidJSONError",
    "InvalidNameError",
    "InvalidReferenceError",
    "LimitExceededError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelTimeoutError",
    "MonitoringError",
    "NotFoundError",
    "NotReadyError",
    "OverloadedError",
    "PermissionDeniedError",
    "PredictionNotFoundError",
    "ProtocolError",
    "RegistrationError",
    "RollbackError",
    "SchemaError",
    "SignatureMismatchError",
    "StoreError",
    "TokenNotFoundError",
    "UnknownDetectorError",
    "UnknownFlavorError",
    "UnsafeArtifactError",
    "UntrustedArtifactError",
    "VersionArchivedError",
    "VersionInUseError",
    "VersionNotFoundError",
    "WorkerCrashedError",
]
