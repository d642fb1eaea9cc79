"""wavespeed-async: the asyncio-native client for the WaveSpeedAI generative-media API.

>>> from wavespeed_async import AsyncWaveSpeed
>>> async with AsyncWaveSpeed() as client:                          # doctest: +SKIP
...     video = await client.text_to_video("a red fox running through snow")
"""

from ._coordination.local import Coordinator, LocalCoordinator
from ._engine.polling import (
    IMAGE_SCHEDULE,
    RECONCILE_SCHEDULE,
    VIDEO_SCHEDULE,
    PollSchedule,
    PollStats,
)
from ._http.retry import RetryPolicy
from ._storage import StorageOptions
from ._wire.account import BillingRecord, ModelUsage, Usage, UsageDay
from ._wire.limits import ACCOUNT_LEVELS, Limits
from ._wire.models import ImageEdit, ModelInfo, Prediction, Quote, Status, TextToVideo, Timings
from .batch import Batch, BatchEvent, BatchItem, ItemResult, ProgressCallback
from .client import AsyncWaveSpeed
from .errors import (
    APIError,
    AuthenticationError,
    BucketNotFound,
    ChecksumMismatch,
    ClientClosed,
    ConfigurationError,
    ConnectError,
    CoordinatorUnavailable,
    CostLimitExceeded,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidInput,
    InvalidRequest,
    JournalError,
    NotFinished,
    NotFound,
    OutputExpired,
    PredictionFailed,
    PredictionTimeout,
    ProtocolError,
    RateLimited,
    ResponseTooLarge,
    ServerError,
    StorageAccessDenied,
    StorageCredentialsMissing,
    StorageError,
    SubmissionUncertain,
    TransportError,
    WaveSpeedError,
    WebhookVerificationError,
)
from .future import PredictionFuture
from .sync import WaveSpeed
from .webhooks import WebhookReceiver, sign_webhook, verify_webhook

__version__ = "0.1.0"

__all__ = [
    "ACCOUNT_LEVELS",
    "IMAGE_SCHEDULE",
    "RECONCILE_SCHEDULE",
    "VIDEO_SCHEDULE",
    "__version__",
    "APIError",
    "AsyncWaveSpeed",
    "AuthenticationError",
    "Batch",
    "BillingRecord",
    "BatchEvent",
    "BatchItem",
    "BucketNotFound",
    "ChecksumMismatch",
    "ClientClosed",
    "ConfigurationError",
    "ConnectError",
    "Coordinator",
    "CoordinatorUnavailable",
    "CostLimitExceeded",
    "IdempotencyConflict",
    "ImageEdit",
    "InsufficientBalance",
    "InvalidInput",
    "InvalidRequest",
    "ItemResult",
    "JournalError",
    "Limits",
    "LocalCoordinator",
    "ModelInfo",
    "ModelUsage",
    "NotFinished",
    "NotFound",
    "OutputExpired",
    "PollSchedule",
    "PollStats",
    "Prediction",
    "PredictionFailed",
    "PredictionFuture",
    "PredictionTimeout",
    "ProgressCallback",
    "ProtocolError",
    "Quote",
    "RateLimited",
    "ResponseTooLarge",
    "RetryPolicy",
    "ServerError",
    "sign_webhook",
    "verify_webhook",
    "Status",
    "StorageAccessDenied",
    "StorageCredentialsMissing",
    "StorageError",
    "StorageOptions",
    "SubmissionUncertain",
    "TextToVideo",
    "Timings",
    "TransportError",
    "Usage",
    "UsageDay",
    "WaveSpeed",
    "WaveSpeedError",
    "WebhookReceiver",
    "WebhookVerificationError",
]
