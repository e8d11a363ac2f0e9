"""The errors a reader gets for an object that cannot be rebuilt (shells/worker/recovery.loss_error)."""
from __future__ import annotations

import pytest

from ember import exceptions as exc
from ember.logic.owner.lineage import LossReason, Unrecoverable
from ember.shells.worker.recovery import loss_error

PUT_ID = b"p" * 16 + b"\x00\x00\x00\x00"
RETURN_ID = b"t" * 16 + b"\x01\x00\x00\x00"


@pytest.mark.parametrize("object_id, reason, cls, words", [
    (PUT_ID, LossReason.NO_LINEAGE, exc.ObjectLostError, "ember.put() cannot be rebuilt"),
    (RETURN_ID, LossReason.NO_LINEAGE, exc.ObjectReconstructionFailedError, "No lineage"),
    (RETURN_ID, LossReason.NOT_RETRYABLE, exc.ObjectReconstructionFailedMaxAttemptsExceededError, "max_retries=0"),
    (RETURN_ID, LossReason.MAX_ATTEMPTS_EXCEEDED, exc.ObjectReconstructionFailedMaxAttemptsExceededError,
     "used up its max_retries"),
    (RETURN_ID, LossReason.LINEAGE_EVICTED, exc.ObjectReconstructionFailedLineageEvictedError, "max_lineage_bytes=7"),
])
def test_each_reason_has_rays_class_and_names_the_cause(object_id: bytes, reason: LossReason, cls: type,
                                                         words: str) -> None:
    err = loss_error(object_id, Unrecoverable(object_id, reason, None), "pull failed", "1.2.3.4:5", "f.py:3", 7)
    assert type(err) is cls and isinstance(err, exc.ObjectLostError)
    assert err.owner_address == "1.2.3.4:5" and err.call_site == "f.py:3"
    assert words in str(err) and "pull failed" in str(err)
    assert err.object_ref_hex == object_id.hex()


def test_an_argument_that_cannot_be_rebuilt_is_named() -> None:
    err = loss_error(RETURN_ID, Unrecoverable(PUT_ID, LossReason.NO_LINEAGE, None), "", "", "", 0)
    assert type(err) is exc.ObjectLostError
    assert PUT_ID.hex() in err.detail and "argument" in err.detail
