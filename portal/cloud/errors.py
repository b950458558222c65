"""The one exception the cloud layer raises: an AWS error with the operation and environment named."""

from __future__ import annotations

from portal.errors import Unavailable

ACCESS_DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
    "AuthorizationError", "NotAuthorized", "AccessDeniedForDependencyException",
})
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
    "ProvisionedThroughputExceededException", "BandwidthLimitExceeded", "LimitExceededException",
})
CREDENTIAL_CODES = frozenset({
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch",
    "UnrecognizedClientException", "InvalidAccessKeyId", "NoCredentials", "MissingAuthenticationToken",
})
NOT_FOUND_CODES = frozenset({
    "NotFound", "ResourceNotFoundException", "DBInstanceNotFound", "DBInstanceNotFoundFault",
    "ReplicationGroupNotFoundFault", "ListenerNotFound", "TargetGroupNotFound", "LoadBalancerNotFound",
    "NoSuchBucket", "NoSuchHostedZone", "ResourceNotFound",
})
UNREACHABLE_CODES = frozenset({"EndpointConnectionError", "ConnectTimeout", "ReadTimeout", "ConnectionClosed"})


class CloudError(Unavailable):
    """An AWS call that failed: `code` is AWS's error code (or a portal code for local failures).

    To the API and the pages it is a 503 `unavailable` whose detail is `words`; `code` stays AWS's,
    which is what callers and logs branch on."""

    def __init__(self, code: str, operation: str, environment: str, message: str = ""):
        self.operation = operation or "unknown operation"
        self.environment = environment or "?"
        self.message = message or ""
        self.code = code or "Unknown"
        Exception.__init__(self, f"{self.operation} in {self.environment} failed: {self.code}: {self.message}")
        self.detail = self.words

    def as_body(self) -> dict[str, str]:
        return {"error": Unavailable.code, "detail": self.detail}

    @property
    def is_access_denied(self) -> bool:
        return self.code in ACCESS_DENIED_CODES

    @property
    def is_throttling(self) -> bool:
        return self.code in THROTTLING_CODES

    @property
    def is_not_found(self) -> bool:
        return self.code in NOT_FOUND_CODES or self.code.endswith(("NotFound", "NotFoundFault", "NotFoundException"))

    @property
    def words(self) -> str:
        """One sentence for a page: what failed, where, why, and what to do about it."""
        where = f"{self.operation} in the {self.environment} environment"
        if self.is_access_denied:
            why = ("AWS denied access: the portal's credentials (or the role it assumes) are not allowed to call "
                   f"{self.operation}. Grant that permission in IAM")
        elif self.is_throttling:
            why = "AWS kept throttling the request even after retries with backoff. Try again in a minute"
        elif self.code in CREDENTIAL_CODES:
            why = "AWS did not accept the portal's credentials (missing, expired or wrong). Check the environment's credentials settings"
        elif self.code in UNREACHABLE_CODES:
            why = "AWS could not be reached (network or endpoint problem)"
        elif self.code == "NotConfigured":
            why = "the environment does not name the resource this needs. An admin can set it on the environment's edit page"
        elif self.is_not_found:
            why = "the resource the environment names does not exist (or is in another account or region)"
        elif self.code in ("ValidationError", "ValidationException", "InvalidParameterValue", "InvalidParameterCombination"):
            why = "AWS rejected the request as invalid"
        else:
            why = "AWS answered with an error"
        detail = f" ({self.code}: {self.message})" if self.message else f" ({self.code})"
        return f"{where} failed: {why}.{detail}"

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "operation": self.operation, "environment": self.environment,
                "message": self.message, "words": self.words}
