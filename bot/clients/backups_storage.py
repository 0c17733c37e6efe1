"""Backup dumps in S3: streamed multipart uploads, checksum files, listing and reading back.

A dump is any object under BACKUP_PREFIX except checksum files (`KEY.sha256`, in
`sha256sum` format: the hex digest, two spaces, the file name). Incomplete multipart
uploads are not objects, so they never count as backups. The bot records the outcome of
each verification as tags on the dump.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import posixpath
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from bot.clients.aws import aws_error, error_code
from bot.errors import Refused, TargetRejected, TargetResponseInvalid, UsageError

logger = logging.getLogger(__name__)

TARGET = "S3"
CHECKSUM_SUFFIX = ".sha256"
# S3 allows at most 10,000 parts of 5 MiB to 5 GiB each (the last part may be smaller), so
# 16 MiB parts cap a dump at about 156 GiB. One part is uploaded while the next one fills,
# so an upload holds at most about three parts: the filling buffer, its copy for upload_part,
# and the part in flight.
PART_BYTES = 16 * 1024 * 1024
MAX_PARTS = 10_000
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
# A listing reads at most this many keys (200 pages). S3 lists keys in ascending order, so
# with dated names a cut listing misses the newest dumps. `BackupListing.truncated` reports it.
MAX_LISTED_KEYS = 200_000
TAG_RESULT = "meridian-bot-verification"
TAG_METHOD = "meridian-bot-verification-method"
TAG_TIME = "meridian-bot-verified-at"
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Verification:
    """The bot's last verdict on a dump: how it was checked, when, and whether it passed."""

    passed: bool
    method: str  # "full-read" (checksum and pg_restore -f /dev/null) or "restore-test"
    at: datetime


@dataclass(frozen=True)
class BackupObject:
    """One dump in the bucket. `etag` identifies its exact content for conditional reads."""

    key: str
    size: int
    last_modified: datetime
    etag: str
    has_checksum: bool
    verification: Verification | None = None

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def is_good(self) -> bool:
        """Has a checksum file and no failed verification (an unverified dump still counts)."""
        return self.has_checksum and (self.verification is None or self.verification.passed)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackupObject:
        return cls(
            key=str(data["key"]),
            size=int(data["size"]),
            last_modified=datetime.fromisoformat(data["last_modified"]),
            etag=str(data["etag"]),
            has_checksum=bool(data["has_checksum"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "size": self.size,
            "last_modified": self.last_modified.isoformat(),
            "etag": self.etag,
            "has_checksum": self.has_checksum,
        }


@dataclass(frozen=True)
class BackupListing:
    """Dumps newest first, and the multipart uploads under the prefix that never completed."""

    backups: tuple[BackupObject, ...]
    incomplete_uploads: int
    truncated: bool = False

    @property
    def newest_good(self) -> BackupObject | None:
        return next((backup for backup in self.backups if backup.is_good), None)


@dataclass(frozen=True)
class UploadedDump:
    key: str
    size: int
    sha256: str
    etag: str
    parts: int


class BackupStorage(Protocol):
    """The backup bucket as the backup and restore procedures use it."""

    location: str

    def key_for(self, name: str) -> str: ...

    async def list_backups(self, *, with_verification: int = 0) -> BackupListing: ...

    async def head(self, key: str) -> BackupObject: ...

    async def read_checksum(self, key: str) -> str | None: ...

    def read(self, key: str, *, etag: str) -> AsyncIterator[bytes]: ...

    def start_upload(self, key: str, *, metadata: dict[str, str]) -> MultipartUpload: ...

    async def put_checksum(self, key: str, sha256: str) -> None: ...

    async def record_verification(self, key: str, verification: Verification) -> None: ...


class MultipartUpload:
    """A multipart upload fed chunk by chunk, with a running SHA-256 of everything written.

    `write` returns once the chunk is buffered; a full part is uploaded in a worker thread
    while the next one fills. `complete` uploads the rest and completes the upload;
    `abort` (also called by `complete` on failure) deletes the parts uploaded so far.
    """

    def __init__(self, s3: Any, *, bucket: str, key: str, metadata: dict[str, str], part_bytes: int = PART_BYTES) -> None:
        self._s3 = s3
        self._bucket = bucket
        self.key = key
        self._metadata = metadata
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._sha256 = hashlib.sha256()
        self._parts: list[dict[str, Any]] = []
        self._in_flight: asyncio.Task[None] | None = None
        self._upload_id: str | None = None
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        self._buffer += chunk
        self.size += len(chunk)
        if len(self._buffer) >= self._part_bytes:
            await self._send_part()

    async def complete(self) -> UploadedDump:
        try:
            await self._send_part()
            await self._wait_in_flight()
            completed = await self._call(
                "complete the upload",
                self._s3.complete_multipart_upload,
                Bucket=self._bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        except BaseException:
            await self.abort()
            raise
        logger.info("Uploaded s3://%s/%s: %d bytes in %d parts", self._bucket, self.key, self.size, len(self._parts))
        return UploadedDump(
            key=self.key,
            size=self.size,
            sha256=self._sha256.hexdigest(),
            etag=str(completed["ETag"]),
            parts=len(self._parts),
        )

    async def abort(self) -> None:
        """Delete the parts uploaded so far. An AWS error here is logged, not raised, to keep the original error."""
        if self._in_flight is not None:
            self._in_flight.cancel()
            await asyncio.gather(self._in_flight, return_exceptions=True)
            self._in_flight = None
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            await asyncio.to_thread(self._s3.abort_multipart_upload, Bucket=self._bucket, Key=self.key, UploadId=upload_id)
            logger.info("Aborted the multipart upload of s3://%s/%s", self._bucket, self.key)
        except (ClientError, BotoCoreError):
            logger.exception(
                "Could not abort the multipart upload %s of s3://%s/%s; a bucket lifecycle rule must remove it",
                upload_id,
                self._bucket,
                self.key,
            )

    async def _send_part(self) -> None:
        if not self._buffer and self._parts:
            return
        if self._upload_id is None:
            created = await self._call(
                "start a multipart upload",
                self._s3.create_multipart_upload,
                Bucket=self._bucket,
                Key=self.key,
                Metadata=self._metadata,
                ContentType="application/octet-stream",
            )
            self._upload_id = str(created["UploadId"])
        if len(self._parts) >= MAX_PARTS:
            raise Refused(
                f"The dump is larger than S3's limit of {MAX_PARTS:,} parts of {self._part_bytes // 2**20} MiB.",
                hint="Raise PART_BYTES in bot/clients/backups_storage.py.",
            )
        await self._wait_in_flight()
        body, self._buffer = bytes(self._buffer), bytearray()
        number = len(self._parts) + 1
        self._parts.append({"PartNumber": number})
        self._in_flight = asyncio.create_task(self._upload_part(number, body))

    async def _upload_part(self, number: int, body: bytes) -> None:
        uploaded = await self._call(
            f"upload part {number}",
            self._s3.upload_part,
            Bucket=self._bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts[number - 1]["ETag"] = uploaded["ETag"]

    async def _wait_in_flight(self) -> None:
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            await task

    async def _call(self, action: str, method: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(method, **kwargs)
        except (ClientError, BotoCoreError) as error:
            raise aws_error(error, target=TARGET, action=f"S3: {action} for {self.key}") from error


class S3BackupStorage:
    """Dumps under `s3://bucket/prefix`, through a boto3 S3 client."""

    def __init__(self, s3: Any, *, bucket: str, prefix: str, part_bytes: int = PART_BYTES) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self._part_bytes = part_bytes

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key_for(self, name: str) -> str:
        """Turn a name typed in Slack (a key, or a file name under the prefix) into a key."""
        cleaned = name.strip()
        if not cleaned or ".." in cleaned.split("/") or cleaned.endswith("/"):
            raise UsageError(f"`{name}` is not a backup name.", hint="`/meridian backup list` shows the backups.")
        if cleaned.endswith(CHECKSUM_SUFFIX):
            raise UsageError(
                f"`{name}` is a checksum file, not a dump.",
                hint=f"Name the dump itself, without `{CHECKSUM_SUFFIX}`.",
            )
        return cleaned if cleaned.startswith(self.prefix) else self.prefix + cleaned

    async def list_backups(self, *, with_verification: int = 0) -> BackupListing:
        """List the dumps newest first; read the verification tags of the newest `with_verification`."""
        objects: dict[str, dict[str, Any]] = {}
        checksums: set[str] = set()
        truncated = False
        token: str | None = None
        while True:
            page = await self._call(
                "list the backups",
                self._s3.list_objects_v2,
                Bucket=self.bucket,
                Prefix=self.prefix,
                **({"ContinuationToken": token} if token else {}),
            )
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key.endswith(CHECKSUM_SUFFIX):
                    checksums.add(key.removesuffix(CHECKSUM_SUFFIX))
                elif not key.endswith("/"):
                    objects[key] = item
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
            if len(objects) + len(checksums) >= MAX_LISTED_KEYS:
                truncated = True
                break

        ordered = sorted(objects.values(), key=lambda item: (item["LastModified"], item["Key"]), reverse=True)
        backups = []
        for index, item in enumerate(ordered):
            verification = await self._verification(str(item["Key"])) if index < with_verification else None
            backups.append(
                BackupObject(
                    key=str(item["Key"]),
                    size=int(item["Size"]),
                    last_modified=_utc(item["LastModified"]),
                    etag=str(item["ETag"]),
                    has_checksum=item["Key"] in checksums,
                    verification=verification,
                )
            )
        uploads = await self._call(
            "list incomplete uploads", self._s3.list_multipart_uploads, Bucket=self.bucket, Prefix=self.prefix
        )
        return BackupListing(
            backups=tuple(backups),
            incomplete_uploads=len(uploads.get("Uploads", [])),
            truncated=truncated,
        )

    async def head(self, key: str) -> BackupObject:
        try:
            head = await asyncio.to_thread(self._s3.head_object, Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error_code(error) in ("404", "NoSuchKey", "NotFound"):
                raise TargetRejected(
                    TARGET,
                    f"There is no backup `{key}` in s3://{self.bucket}.",
                    hint="`/meridian backup list` shows the backups.",
                ) from error
            raise aws_error(error, target=TARGET, action=f"S3: read {key}") from error
        except BotoCoreError as error:
            raise aws_error(error, target=TARGET, action=f"S3: read {key}") from error
        return BackupObject(
            key=key,
            size=int(head["ContentLength"]),
            last_modified=_utc(head["LastModified"]),
            etag=str(head["ETag"]),
            has_checksum=await self.read_checksum(key) is not None,
            verification=await self._verification(key),
        )

    async def read_checksum(self, key: str) -> str | None:
        """Return the hex SHA-256 in `KEY.sha256`, or None when there is no such file."""
        checksum_key = key + CHECKSUM_SUFFIX
        try:
            response = await asyncio.to_thread(self._s3.get_object, Bucket=self.bucket, Key=checksum_key)
            text = await asyncio.to_thread(response["Body"].read, 4096)
        except ClientError as error:
            if error_code(error) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise aws_error(error, target=TARGET, action=f"S3: read {checksum_key}") from error
        except BotoCoreError as error:
            raise aws_error(error, target=TARGET, action=f"S3: read {checksum_key}") from error
        digest = text.decode("ascii", "replace").split()[0].lower() if text.strip() else ""
        if not _HEX_DIGEST.match(digest):
            raise TargetResponseInvalid(
                TARGET,
                f"The checksum file {checksum_key} does not start with a SHA-256 hex digest.",
                hint="Write it as `sha256sum` does: the digest, two spaces, the file name.",
            )
        return digest

    async def read(self, key: str, *, etag: str) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks, only if its ETag is still `etag`."""
        try:
            response = await asyncio.to_thread(self._s3.get_object, Bucket=self.bucket, Key=key, IfMatch=etag)
        except ClientError as error:
            if error_code(error) in ("PreconditionFailed", "412"):
                raise Refused(
                    f"The backup {key} was replaced after it was checked (its ETag changed).",
                    hint="Nothing was restored from it. Start a new run to check the new object.",
                ) from error
            raise aws_error(error, target=TARGET, action=f"S3: read {key}") from error
        except BotoCoreError as error:
            raise aws_error(error, target=TARGET, action=f"S3: read {key}") from error
        body = response["Body"]
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(body.read, DOWNLOAD_CHUNK_BYTES)
                except BotoCoreError as error:
                    raise aws_error(error, target=TARGET, action=f"S3: read {key}") from error
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def start_upload(self, key: str, *, metadata: dict[str, str]) -> MultipartUpload:
        return MultipartUpload(self._s3, bucket=self.bucket, key=key, metadata=metadata, part_bytes=self._part_bytes)

    async def put_checksum(self, key: str, sha256: str) -> None:
        line = f"{sha256}  {posixpath.basename(key)}\n".encode()
        await self._call(
            "write the checksum file",
            self._s3.put_object,
            Bucket=self.bucket,
            Key=key + CHECKSUM_SUFFIX,
            Body=line,
            ContentType="text/plain",
        )

    async def record_verification(self, key: str, verification: Verification) -> None:
        tags = [
            {"Key": TAG_RESULT, "Value": "passed" if verification.passed else "failed"},
            {"Key": TAG_METHOD, "Value": verification.method},
            {"Key": TAG_TIME, "Value": verification.at.strftime("%Y-%m-%dT%H:%M:%SZ")},
        ]
        await self._call("tag the dump", self._s3.put_object_tagging, Bucket=self.bucket, Key=key, Tagging={"TagSet": tags})

    async def _verification(self, key: str) -> Verification | None:
        response = await self._call("read the dump's tags", self._s3.get_object_tagging, Bucket=self.bucket, Key=key)
        tags = {tag["Key"]: tag["Value"] for tag in response.get("TagSet", [])}
        if TAG_RESULT not in tags:
            return None
        try:
            at = datetime.strptime(tags.get(TAG_TIME, ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        return Verification(passed=tags[TAG_RESULT] == "passed", method=tags.get(TAG_METHOD, "unknown"), at=at)

    async def _call(self, action: str, method: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(method, **kwargs)
        except (ClientError, BotoCoreError) as error:
            raise aws_error(error, target=TARGET, action=f"S3: {action}") from error


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
