"""Redis storage for the duplicate and author windows, shared by several replicas.

Layout under one key prefix (``zhenping:campaign`` by default)::

    <p>:order          sorted set: one member per comment, scored by the time it was seen
    <p>:t:<text>       hash: n (comments with this text), c (cluster), f (cluster first seen),
                       s (MinHash signature, bytes), b (band keys, comma-separated)
    <p>:b:<band>       set: texts with this LSH band key
    <p>:id:<caller>    string: the order member of the comment with this caller id
    <p>:seq            counter for unique members
    <p>:a:order, <p>:a:u:<author>, <p>:a:seq   the same for author sums

Keys are 16 hex digits of 64-bit hashes; no comment text or raw id is stored.
Adding and evicting run as Lua scripts, so each is atomic and every replica
sees counts that add up. Two replicas adding near duplicates at the same moment
may each start a cluster; after that both join the older one. Needs a single
Redis server (the scripts touch keys they compute, which Redis Cluster does not
allow).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from zhenping.model.campaign.authors import AuthorObservation, AuthorStats
from zhenping.model.campaign.window import BAND_TEXTS, NewObservation, TextRecord, WindowUnavailable, key_hex

DEFAULT_PREFIX = "zhenping:campaign"
_EVICT_LIMIT = 10_000  # members one script call evicts at most; the next call goes on

_DROP = """
local p = ARGV[1]
local order = p .. ':order'
local function drop(member)
  if redis.call('ZREM', order, member) == 0 then return 0 end
  local obs = cjson.decode(member)
  local tkey = p .. ':t:' .. obs[2]
  if redis.call('HINCRBY', tkey, 'n', -1) <= 0 then
    local bands = redis.call('HGET', tkey, 'b')
    if bands then
      for band in string.gmatch(bands, '[^,]+') do redis.call('SREM', p .. ':b:' .. band, obs[2]) end
    end
    redis.call('DEL', tkey)
  end
  if obs[3] ~= '' then
    local ckey = p .. ':id:' .. obs[3]
    if redis.call('GET', ckey) == member then redis.call('DEL', ckey) end
  end
  return 1
end
"""

# ARGV: prefix, cutoff (<= 0: no time limit), max_size, caller keys to retire...
_EVICT = _DROP + """
local cutoff = tonumber(ARGV[2])
local max_size = tonumber(ARGV[3])
local removed = 0
for i = 4, #ARGV do
  local member = redis.call('GET', p .. ':id:' .. ARGV[i])
  if member then removed = removed + drop(member) end
end
if cutoff > 0 then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', order, '-inf', '(' .. ARGV[2], 'LIMIT', 0, %(limit)d)) do
    removed = removed + drop(m)
  end
end
local excess = redis.call('ZCARD', order) - max_size
if excess > 0 then
  for _, m in ipairs(redis.call('ZRANGE', order, 0, math.min(excess, %(limit)d) - 1)) do
    removed = removed + drop(m)
  end
end
return removed
""" % {"limit": _EVICT_LIMIT}

# ARGV: prefix, now, then per comment: text, cluster, first_seen, signature, bands, caller ('' for none)
_ADD = _DROP + """
local now = ARGV[2]
for i = 3, #ARGV, 6 do
  local th, cluster, first, sig, bands, caller = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  local member = cjson.encode({redis.call('INCR', p .. ':seq'), th, caller})
  local tkey = p .. ':t:' .. th
  if redis.call('HINCRBY', tkey, 'n', 1) == 1 then
    redis.call('HSET', tkey, 'c', cluster, 'f', first, 's', sig, 'b', bands)
    for band in string.gmatch(bands, '[^,]+') do
      local bkey = p .. ':b:' .. band
      if redis.call('SCARD', bkey) < %(band_texts)d then redis.call('SADD', bkey, th) end
    end
  end
  redis.call('ZADD', order, now, member)
  if caller ~= '' then
    local ckey = p .. ':id:' .. caller
    local old = redis.call('GET', ckey)
    if old then drop(old) end
    redis.call('SET', ckey, member)
  end
end
return 1
""" % {"band_texts": BAND_TEXTS}

_AUTHOR_DROP = """
local p = ARGV[1]
local order = p .. ':a:order'
local function drop(member)
  if redis.call('ZREM', order, member) == 0 then return 0 end
  local obs = cjson.decode(member)
  local ukey = p .. ':a:u:' .. obs[2]
  if redis.call('HINCRBY', ukey, 'n', -1) <= 0 then
    redis.call('DEL', ukey)
  else
    -- 0 - x, not -x: Lua writes -0 as "-0", which HINCRBY refuses
    redis.call('HINCRBY', ukey, 't', 0 - obs[3])
    redis.call('HINCRBY', ukey, 'd', 0 - obs[4])
    redis.call('HINCRBYFLOAT', ukey, 'w', 0 - obs[5])
    redis.call('HINCRBYFLOAT', ukey, 's', 0 - obs[6])
  end
  return 1
end
"""

# ARGV: prefix, cutoff, max_size
_AUTHOR_EVICT = _AUTHOR_DROP + """
local cutoff = tonumber(ARGV[2])
local max_size = tonumber(ARGV[3])
local removed = 0
if cutoff > 0 then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', order, '-inf', '(' .. ARGV[2], 'LIMIT', 0, %(limit)d)) do
    removed = removed + drop(m)
  end
end
local excess = redis.call('ZCARD', order) - max_size
if excess > 0 then
  for _, m in ipairs(redis.call('ZRANGE', order, 0, math.min(excess, %(limit)d) - 1)) do
    removed = removed + drop(m)
  end
end
return removed
""" % {"limit": _EVICT_LIMIT}

# ARGV: prefix, now, then per comment: author, templated, duplicated, warmth, substance
_AUTHOR_ADD = """
local p = ARGV[1]
local order = p .. ':a:order'
local now = ARGV[2]
for i = 3, #ARGV, 5 do
  local author, t, d, w, s = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2]), ARGV[i+3], ARGV[i+4]
  local member = cjson.encode({redis.call('INCR', p .. ':a:seq'), author, t, d, tonumber(w), tonumber(s)})
  redis.call('ZADD', order, now, member)
  local ukey = p .. ':a:u:' .. author
  redis.call('HINCRBY', ukey, 'n', 1)
  redis.call('HINCRBY', ukey, 't', t)
  redis.call('HINCRBY', ukey, 'd', d)
  redis.call('HINCRBYFLOAT', ukey, 'w', w)
  redis.call('HINCRBYFLOAT', ukey, 's', s)
end
return 1
"""


def redis_client(url: str, timeout: float = 1.0, retries: int = 1):
    """A Redis client for ``url`` (``redis://host:port/db``); connects on first use.

    Args:
        url: where Redis listens.
        timeout: seconds to connect and per command; a request waits at most
            about ``(retries + 1) * timeout`` for an unreachable Redis.
        retries: retries of a failed command (after a short backoff).

    Raises:
        ValueError: the ``redis`` package is not installed.
    """
    try:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry
    except ImportError:
        raise ValueError("the Redis window needs the redis package: pip install 'zhenping[redis]'") from None
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries))


def _where(client) -> str:
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"redis unix:{kw['path']}"
    return f"redis {kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"


class _RedisBase:
    def __init__(self, client, prefix: str = DEFAULT_PREFIX):
        import redis

        if not prefix or any(ch.isspace() for ch in prefix):
            raise ValueError(f"prefix must be a non-empty string without white space, got {prefix!r}")
        self.client = client
        self.prefix = prefix
        self._errors = (redis.exceptions.RedisError, OSError)

    def _unavailable(self, exc: Exception) -> WindowUnavailable:
        return WindowUnavailable(f"campaign window at {_where(self.client)} is unavailable: {exc}")

    def _clear(self, patterns: Sequence[str]) -> None:
        try:
            for pattern in patterns:
                batch = []
                for key in self.client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= 1000:
                        self.client.delete(*batch)
                        batch = []
                if batch:
                    self.client.delete(*batch)
        except self._errors as exc:
            raise self._unavailable(exc) from exc


class RedisStore(_RedisBase):
    """The duplicate window in Redis (see the module docstring for the layout).

    Args:
        client: a ``redis.Redis`` (bytes responses, the default).
        prefix: key prefix; windows with different prefixes are independent.

    Raises:
        zhenping.model.campaign.window.WindowUnavailable: from any method, when Redis
            cannot be reached.
    """

    backend = "redis"

    def __init__(self, client, prefix: str = DEFAULT_PREFIX):
        super().__init__(client, prefix)
        self._evict_script = client.register_script(_EVICT)
        self._add_script = client.register_script(_ADD)

    def __len__(self) -> int:
        try:
            return int(self.client.zcard(f"{self.prefix}:order"))
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    @property
    def distinct_texts(self) -> int:
        count = 0
        try:
            for _ in self.client.scan_iter(match=f"{self.prefix}:t:*", count=1000):
                count += 1
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        return count

    def clear(self) -> None:
        p = self.prefix
        self._clear([f"{p}:order", f"{p}:seq", f"{p}:t:*", f"{p}:b:*", f"{p}:id:*"])

    def evict(self, now: float, ttl: float, max_size: int) -> None:
        cutoff = now - ttl if ttl > 0 else 0
        try:
            self._evict_script(args=[self.prefix, repr(float(cutoff)), int(max_size)])
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def retire(self, callers: Sequence[int]) -> None:
        if not callers:
            return
        try:
            self._evict_script(args=[self.prefix, "0", 2**62, *(key_hex(c) for c in callers)])
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def callers(self, keys: Sequence[int]) -> dict[int, int]:
        try:
            members = self.client.mget([f"{self.prefix}:id:{key_hex(k)}" for k in keys])
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        out = {}
        for key, member in zip(keys, members):
            if member is not None:
                out[key] = int(json.loads(member)[1], 16)
        return out

    def band_members(self, bands: Sequence[int]) -> dict[int, set[int]]:
        pipe = self.client.pipeline(transaction=False)
        for band in bands:
            pipe.smembers(f"{self.prefix}:b:{key_hex(band)}")
        try:
            found = pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        return {band: {int(m, 16) for m in members} for band, members in zip(bands, found) if members}

    def texts(self, keys: Sequence[int]) -> dict[int, TextRecord]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(f"{self.prefix}:t:{key_hex(key)}", "n", "c", "f", "s")
        try:
            found = pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        out = {}
        for key, (n, c, f, s) in zip(keys, found):
            if n is None or c is None or int(n) <= 0:
                continue
            out[key] = TextRecord(int(n), int(c, 16), float(f), bytes(s) if s else None)
        return out

    def add(self, observations: Sequence[NewObservation], now: float) -> None:
        if not observations:
            return
        args: list = [self.prefix, repr(float(now))]
        for o in observations:
            args += [key_hex(o.text), key_hex(o.cluster), repr(float(o.first_seen)),
                     b"" if o.sig is None else o.sig.astype(np.uint32).tobytes(),
                     ",".join(key_hex(b) for b in o.bands), "" if o.caller is None else key_hex(o.caller)]
        try:
            self._add_script(args=args)
        except self._errors as exc:
            raise self._unavailable(exc) from exc


class RedisAuthorStore(_RedisBase):
    """Author sums in Redis, under the same prefix as the duplicate window."""

    backend = "redis"

    def __init__(self, client, prefix: str = DEFAULT_PREFIX):
        super().__init__(client, prefix)
        self._evict_script = client.register_script(_AUTHOR_EVICT)
        self._add_script = client.register_script(_AUTHOR_ADD)

    def __len__(self) -> int:
        try:
            return int(self.client.zcard(f"{self.prefix}:a:order"))
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def clear(self) -> None:
        p = self.prefix
        self._clear([f"{p}:a:order", f"{p}:a:seq", f"{p}:a:u:*"])

    def evict(self, now: float, ttl: float, max_size: int) -> None:
        cutoff = now - ttl if ttl > 0 else 0
        try:
            self._evict_script(args=[self.prefix, repr(float(cutoff)), int(max_size)])
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def add(self, observations: Sequence[AuthorObservation], now: float) -> None:
        if not observations:
            return
        args: list = [self.prefix, repr(float(now))]
        for o in observations:
            args += [key_hex(o.author), int(o.templated), int(o.duplicated), repr(float(o.warmth)),
                     repr(float(o.substance))]
        try:
            self._add_script(args=args)
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def stats(self, authors: Sequence[int]) -> dict[int, AuthorStats]:
        pipe = self.client.pipeline(transaction=False)
        for author in authors:
            pipe.hmget(f"{self.prefix}:a:u:{key_hex(author)}", "n", "t", "d", "w", "s")
        try:
            found = pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        out = {}
        for author, (n, t, d, w, s) in zip(authors, found):
            if n is not None and int(n) > 0:
                out[author] = AuthorStats(int(n), int(t or 0), int(d or 0), float(w or 0), float(s or 0))
        return out
