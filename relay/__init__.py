"""The relay: outbox entries in Redis → Celery task messages → SNS PublishBatch.

Its own process (Procfile `relay`, `python -m relay`). At least once: an entry is deleted only
after SNS listed it as published, so a crash in between republishes it, and the worker's
idempotent projection makes the duplicate harmless.
"""

import os

# awscrt, when installed, signs small requests slower than botocore's own signer; botocore reads
# this when it is first imported, so it is set before anything imports botocore.
os.environ.setdefault("BOTO_DISABLE_CRT", "true")
