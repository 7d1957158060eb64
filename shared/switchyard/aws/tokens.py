"""The token store of a rotating refresh token on AWS: tokens in the connection secret, the lease in DynamoDB."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from switchyard.errors import ConnectionConfigError, RetryableError
from switchyard.table_keys import ConnectionKeys
from switchyard.tokens import LEASE_RETENTION_SECONDS, LeasedTokenStore, TokenState, _state_from


class SecretsManagerTokenStore(LeasedTokenStore):
    """Tokens in the connection secret (one JSON document), the lease in the idempotency table.

    ``secrets_client`` and ``dynamodb_client`` are botocore clients (``switchyard.aws.clients.client``).
    The lease item ``lease#<connection>#<realm>`` holds ``lease_owner`` and ``lease_expires`` while taken, and
    keeps ``secret_version`` (the version the last holder wrote) after release: Secrets Manager reads are
    not promised to see a write at once, so a holder reads that version too and keeps the newer one.
    """

    def __init__(self, secrets_client: Any, dynamodb_client: Any, table: str, secret_id: str, *,
                 keys: ConnectionKeys, **options: Any) -> None:
        super().__init__(**options)
        self._secrets = secrets_client
        self._dynamodb = dynamodb_client
        self._table = table
        self._secret_id = secret_id
        self._keys = keys

    def _key(self, realm: str) -> dict[str, Any]:
        return {"id": {"S": self._keys.token_lease(realm)}}

    def _try_acquire(self, realm: str, owner: str, now: float) -> tuple[bool, str | None]:
        try:
            answer = self._dynamodb.update_item(
                TableName=self._table, Key=self._key(realm),
                UpdateExpression="SET lease_owner = :me, lease_expires = :until, expiration = :ttl",
                ConditionExpression="attribute_not_exists(lease_owner) OR lease_expires <= :now",
                ExpressionAttributeValues={
                    ":me": {"S": owner}, ":until": {"N": repr(now + self._lease_seconds)},
                    ":now": {"N": repr(now)}, ":ttl": {"N": str(int(now) + LEASE_RETENTION_SECONDS)},
                },
                ReturnValues="ALL_NEW",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False, None
        except (BotoCoreError, ClientError) as exc:
            raise RetryableError(f"the token lease of realm {realm} could not be taken",
                                 reason="token_store_unavailable") from exc
        return True, answer.get("Attributes", {}).get("secret_version", {}).get("S")

    def _release(self, realm: str, owner: str, version: str | None) -> None:
        update = "REMOVE lease_owner, lease_expires"
        values: dict[str, Any] = {":me": {"S": owner}}
        if version is not None:
            update = f"SET secret_version = :v {update}"
            values[":v"] = {"S": version}
        # a failure means it was taken over after it expired, or DynamoDB is unreachable: it expires on its own
        with contextlib.suppress(BotoCoreError, ClientError):
            self._dynamodb.update_item(TableName=self._table, Key=self._key(realm), UpdateExpression=update,
                                       ConditionExpression="lease_owner = :me", ExpressionAttributeValues=values)

    def _get(self, **version: str) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = self._secrets.get_secret_value(SecretId=self._secret_id, **version)
        except self._secrets.exceptions.ResourceNotFoundException as exc:
            which = version.get("VersionId", "current")
            raise ConnectionConfigError(f"secret {self._secret_id} (version {which}) is missing") from exc
        except (BotoCoreError, ClientError) as exc:
            raise RetryableError(f"secret {self._secret_id} could not be read",
                                 reason="token_store_unavailable") from exc
        return answer

    def _read(self, realm: str, version: str | None) -> tuple[TokenState, dict[str, Any]]:
        answer = self._get()
        if version is not None and answer.get("VersionId") != version:
            try:
                pinned = self._get(VersionId=version)
            except ConnectionConfigError:  # pruned: the current version is all there is
                pinned = None
            if pinned is not None and pinned.get("CreatedDate") and answer.get("CreatedDate") and \
                    pinned["CreatedDate"] > answer["CreatedDate"]:
                answer = pinned
        try:
            document = json.loads(answer["SecretString"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConnectionConfigError(f"secret {self._secret_id} is not JSON") from exc
        if not isinstance(document, dict):
            raise ConnectionConfigError(f"secret {self._secret_id} is not a JSON object")
        return _state_from(realm, document), document

    def _write(self, realm: str, document: dict[str, Any], owner: str) -> str:
        # the owner id as ClientRequestToken: writing the same document again is a no-op, not a new version
        answer = self._secrets.put_secret_value(SecretId=self._secret_id, SecretString=json.dumps(document),
                                                ClientRequestToken=owner)
        return str(answer["VersionId"])
