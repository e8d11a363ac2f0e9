"""Storage in Redis: ``redis://[:password@]host:port[/db]`` or ``rediss://`` (TLS).

Each table is one Redis hash ``ember:<table>``; a batch is one MULTI/EXEC transaction.
"""
from __future__ import annotations

from typing import Optional
from urllib.parse import urlparse

from ember.shells.control.storage.base import Guard, Storage, StorageError, Write, retrying


# KEYS: the guards' hashes, then the writes'; ARGV: the number of guards, then (field, flag,
# value) per guard (flag 0: must be absent) and per write (flag 0: delete).  Redis runs a
# script atomically: nothing else runs between the checks and the writes.
_GUARDED_BATCH = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local v = redis.call('HGET', KEYS[i], ARGV[3 * i - 1])
  if ARGV[3 * i] == '0' then
    if v ~= false then return 0 end
  elseif v ~= ARGV[3 * i + 1] then return 0 end
end
for i = n + 1, #KEYS do
  if ARGV[3 * i] == '0' then redis.call('HDEL', KEYS[i], ARGV[3 * i - 1])
  else redis.call('HSET', KEYS[i], ARGV[3 * i - 1], ARGV[3 * i + 1]) end
end
return 1
"""


class RedisStorage(Storage):
    def __init__(self, url: str, *, retry_timeout_s: float = 10.0, prefix: str = "ember:",
                 socket_timeout_s: float = 5.0) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - a dependency
            raise StorageError("Redis storage needs the 'redis' package: pip install redis") from exc
        self._redis = redis
        parsed = urlparse(url)
        self.description = f"Redis storage at {parsed.hostname}:{parsed.port or 6379}"
        self._prefix = prefix
        self._retry_timeout_s = retry_timeout_s
        self._client = redis.Redis.from_url(url, socket_timeout=socket_timeout_s,
                                              socket_connect_timeout=min(2.0, socket_timeout_s))
        self._transient = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
        self._run(self._client.ping)
        self._guarded = self._client.register_script(_GUARDED_BATCH)  # EVALSHA: the script is sent once

    def _run(self, fn):  # type: ignore[no-untyped-def]
        def once():  # type: ignore[no-untyped-def]
            # AuthenticationError is a ConnectionError in redis-py: turn it into a final error
            # before the retry loop sees it (a wrong password does not get better with time).
            try:
                return fn()
            except self._redis.AuthenticationError as exc:
                raise StorageError(f"{self.description} refused the password: {exc} (check the password "
                                   "in the --storage URL: redis://:PASSWORD@host:port)") from exc
            except self._redis.ResponseError as exc:
                if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc) or "HELLO must be called" in str(exc):
                    raise StorageError(f"{self.description} needs a password: {exc} (give it in the "
                                       "--storage URL: redis://:PASSWORD@host:port)") from exc
                raise StorageError(f"{self.description}: {exc}") from exc
        return retrying(self.description, once, self._transient, self._retry_timeout_s)

    def _h(self, table: str) -> str:
        return self._prefix + table

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._run(lambda: self._client.hset(self._h(table), key, value))

    def get(self, table: str, key: bytes) -> Optional[bytes]:
        return self._run(lambda: self._client.hget(self._h(table), key))

    def delete(self, table: str, key: bytes) -> bool:
        return bool(self._run(lambda: self._client.hdel(self._h(table), key)))

    def scan(self, table: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        items = self._run(lambda: self._client.hgetall(self._h(table)))
        return sorted((k, v) for k, v in items.items() if k.startswith(prefix))

    def write_batch(self, writes: list[Write]) -> None:
        def batch() -> None:
            pipe = self._client.pipeline(transaction=True)
            for table, key, value in writes:
                if value is None:
                    pipe.hdel(self._h(table), key)
                else:
                    pipe.hset(self._h(table), key, value)
            pipe.execute()
        self._run(batch)

    def compare_and_set(self, table: str, key: bytes, expected: Optional[bytes], value: bytes) -> bool:
        script = ("local v = redis.call('HGET', KEYS[1], ARGV[1]) "
                  "if (ARGV[3] == '0' and v == false) or (ARGV[3] == '1' and v == ARGV[2]) then "
                  "redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]) return 1 end return 0")
        flag = "0" if expected is None else "1"
        return bool(self._run(lambda: self._client.eval(script, 1, self._h(table), key, expected or b"", flag,
                                                         value)))

    def guarded_batch(self, guards: list[Guard], writes: list[Write]) -> bool:
        keys = [self._h(t) for t, _, _ in guards] + [self._h(t) for t, _, _ in writes]
        argv: list = [len(guards)]
        for _, key, expected in guards:
            argv += [key, "0" if expected is None else "1", expected or b""]
        for _, key, value in writes:
            argv += [key, "0" if value is None else "1", value or b""]
        return bool(self._run(lambda: self._guarded(keys=keys, args=argv)))

    def close(self) -> None:
        self._client.close()
