"""Exact and near-duplicate detection over a rolling window of recent comments.

A comment is compared in three forms, all derived from its normalised text
(:func:`model.normalize.normalize_text`):

* the **dedup form**: lower-cased, white space removed. Two comments with the
  same dedup form are *exact* repeats.
* the **shingle form**: the dedup form without punctuation. Comments of
  ``shingle`` characters or more are compared by the MinHash of their character
  ``shingle``-grams (datasketch's MinHash); two are *near* duplicates when the
  estimated Jaccard similarity of their shingle sets reaches ``threshold``.
  Shorter ones (好听, 好听!!!, 6666) are near duplicates only when their shingle
  forms are equal.
* the **text key**: a 64-bit BLAKE2b hash of the dedup form. The window keeps
  keys, signatures and counts, never comment text.

Candidates are found by LSH banding of the signatures (bands and rows chosen for
the threshold, favouring recall) and then checked against the threshold, so the
banding only decides which pairs are compared.

The window holds the last ``max_size`` comments seen within ``ttl_seconds``;
older ones are evicted first. Each distinct text in the window carries a count,
a cluster id and the time its cluster was first seen. A new text joins the
cluster of its oldest near duplicate in the window (or in the same request), or
starts a cluster named after its own key, so the id is stable: the hex key of the
cluster's first member.

Storage is pluggable: :class:`MemoryStore` (one process) or
:class:`model.campaign.redis_store.RedisStore` (several replicas share one
window).
"""

from __future__ import annotations

import hashlib
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from model.campaign.config import WindowConfig

# LSH banding weighs a missed pair (false negative) above a needless comparison
# (false positive): every candidate is checked against the threshold anyway.
_FP_WEIGHT, _FN_WEIGHT = 0.3, 0.7


# ------------------------------------------------------------------ text forms


def dedup_form(normalized: str) -> str:
    """The form exact repeats share: lower-cased, white space removed.

    Example:
        >>> dedup_form("好评 好评 GOOD")
        '好评好评good'
    """
    return "".join(normalized.lower().split())


def shingle_form(form: str) -> str:
    """The dedup form without punctuation: what near duplicates are compared on."""
    return "".join(ch for ch in form if not unicodedata.category(ch).startswith("P"))


def hash64(value: str) -> int:
    """Stable 64-bit key of a string (BLAKE2b), the same in every process."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big")


def key_hex(key: int) -> str:
    """A 64-bit key as 16 hex digits, as cluster ids are written."""
    return format(key, "016x")


@lru_cache(maxsize=None)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands and rows per band for a similarity threshold.

    Minimises the weighted area under the false-positive and false-negative
    curves of the banding's S-curve ``1 - (1 - s**rows)**bands``.

    Returns:
        ``(bands, rows)`` with ``bands * rows <= num_perm``.

    Example:
        >>> lsh_params(0.6, 64)
        (12, 5)
    """
    s_low = np.linspace(0.0, threshold, 201)
    s_high = np.linspace(threshold, 1.0, 201)
    best = None
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = np.trapezoid(1 - (1 - s_low**rows) ** bands, s_low)
            fn = np.trapezoid((1 - s_high**rows) ** bands, s_high)
            err = _FP_WEIGHT * fp + _FN_WEIGHT * fn
            if best is None or err < best[0] - 1e-12:
                best = (err, bands, rows)
    return best[1], best[2]


class Signer:
    """MinHash signatures and LSH band keys of shingle forms.

    Signatures are datasketch ``MinHash`` values (scheme ``affine32``, fixed
    seed), so every process and replica computes the same ones.

    Args:
        config: the window's settings (threshold, num_perm, shingle, seed).

    Example:
        >>> signer = Signer(WindowConfig())
        >>> sig = signer.signature("这首歌让我想起了高三的晚自习")
        >>> signer.similarity(sig, signer.signature("这首歌让我想起了高三的晚自习啊")) >= 0.6
        True
    """

    def __init__(self, config: WindowConfig):
        from datasketch import MinHash

        self._minhash = MinHash
        self.num_perm = config.num_perm
        self.shingle = config.shingle
        self.threshold = config.threshold
        template = MinHash(num_perm=config.num_perm, seed=config.seed)
        self._permutations = template.permutations
        self._scheme = template.scheme
        self.bands, self.rows = lsh_params(config.threshold, config.num_perm)
        # The affine32 update of datasketch's MinHash, without building a MinHash per
        # text (most of the cost for short comments); the same values, checked in tests.
        self._fast = None
        try:
            from datasketch.minhash import _fmix

            if self._scheme == "affine32":
                a, b = self._permutations
                self._fast = (_fmix, np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32))
        except ImportError:  # another datasketch version: build MinHash objects
            self._fast = None

    def signature(self, form: str) -> np.ndarray | None:
        """The signature of a shingle form, or ``None`` for an empty one.

        A form shorter than ``shingle`` characters gets a constant signature
        derived from the whole form: it is similar (1.0) only to itself.
        """
        if not form:
            return None
        if len(form) < self.shingle:
            return np.full(self.num_perm, hash64(form) & 0xFFFFFFFF, dtype=np.uint32)
        k = self.shingle
        grams = {form[i:i + k].encode("utf-8") for i in range(len(form) - k + 1)}
        if self._fast is not None:
            fmix, a, b = self._fast
            sha1 = hashlib.sha1
            hv = np.fromiter((int.from_bytes(sha1(g).digest()[:4], "little") for g in grams), dtype=np.uint32,
                             count=len(grams)).reshape(-1, 1)
            with np.errstate(over="ignore"):
                return (fmix(hv, 32) * a + b).min(axis=0)
        m = self._minhash(num_perm=self.num_perm, permutations=self._permutations, scheme=self._scheme)
        m.update_batch(grams)
        return np.asarray(m.hashvalues, dtype=np.uint32)

    def band_keys(self, sig: np.ndarray) -> list[int]:
        """One 64-bit key per band; two signatures share a band when a key is equal."""
        raw = sig.tobytes()
        width = 4 * self.rows
        return [
            int.from_bytes(hashlib.blake2b(raw[i * width:(i + 1) * width], digest_size=8,
                                           person=i.to_bytes(2, "big")).digest(), "big")
            for i in range(self.bands)
        ]

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        """Estimated Jaccard similarity: the share of equal signature values."""
        return float(np.count_nonzero(a == b)) / len(a)


# ------------------------------------------------------------------ records


class WindowUnavailable(RuntimeError):
    """The window's store cannot be reached (a shared Redis is down); the message says which."""


@dataclass(frozen=True)
class Duplicates:
    """What the window knows about one comment's repeats.

    Attributes:
        exact_count: other comments in the window and the request with the same
            dedup form.
        near_count: other comments that are near duplicates but not exact repeats.
        cluster_id: 16 hex digits, the key of the cluster's first-seen member.
        first_seen: when the cluster was first seen, seconds since the epoch.
        seen_before: this comment (same id, same text) was already in the window;
            it is not counted again.
    """

    exact_count: int
    near_count: int
    cluster_id: str
    first_seen: float
    seen_before: bool = False

    @property
    def copies(self) -> int:
        """Exact and near copies together."""
        return self.exact_count + self.near_count


@dataclass(frozen=True)
class WindowItem:
    """One comment entering the window.

    Attributes:
        text: the normalised text.
        key: a stable 64-bit key of the caller's comment id (see
            :func:`caller_key`), or ``None`` when the comment has no id.
    """

    text: str
    key: int | None = None


def caller_key(comment_id) -> int | None:
    """Key of a caller's comment id; ``1`` and ``"1"`` are different ids."""
    if comment_id is None:
        return None
    return hash64(f"{type(comment_id).__name__}:{comment_id}")


@dataclass
class TextRecord:
    """A distinct text in the window, as a store returns it."""

    count: int
    cluster: int
    first_seen: float
    sig: np.ndarray | None


@dataclass(frozen=True)
class NewObservation:
    """One comment to add to the store."""

    caller: int | None
    text: int
    cluster: int
    first_seen: float
    sig: np.ndarray | None
    bands: tuple[int, ...]


# ------------------------------------------------------------------ in-process store


class _Obs:
    __slots__ = ("time", "text", "caller", "live")

    def __init__(self, time_: float, text: int, caller: int | None):
        self.time = time_
        self.text = text
        self.caller = caller
        self.live = True


class _Text:
    __slots__ = ("count", "cluster", "first_seen", "sig", "bands")

    def __init__(self, cluster: int, first_seen: float, sig: bytes | None, bands: tuple[int, ...]):
        self.count = 0
        self.cluster = cluster
        self.first_seen = first_seen
        self.sig = sig
        self.bands = bands


class MemoryStore:
    """The window in this process's memory; not shared between processes.

    Memory is bounded by ``max_size`` observations: each costs a small record,
    each distinct text its signature and band entries (see
    ``benchmarks/bench_campaign.py`` for measured bytes per comment).
    Not thread-safe by itself: :class:`DuplicateWindow` serialises access.
    """

    backend = "memory"

    def __init__(self) -> None:
        self._order: deque[_Obs] = deque()
        self._texts: dict[int, _Text] = {}
        self._bands: dict[int, int | set[int]] = {}
        self._callers: dict[int, _Obs] = {}

    def __len__(self) -> int:
        return len(self._order)

    @property
    def distinct_texts(self) -> int:
        return len(self._texts)

    def clear(self) -> None:
        self._order.clear()
        self._texts.clear()
        self._bands.clear()
        self._callers.clear()

    def _release(self, obs: _Obs) -> None:
        if obs.live:
            obs.live = False
            rec = self._texts[obs.text]
            rec.count -= 1
            if rec.count <= 0:
                del self._texts[obs.text]
                for band in rec.bands:
                    members = self._bands.get(band)
                    if isinstance(members, set):
                        members.discard(obs.text)
                        if len(members) == 1:
                            self._bands[band] = next(iter(members))
                    elif members == obs.text:
                        del self._bands[band]
        if obs.caller is not None and self._callers.get(obs.caller) is obs:
            del self._callers[obs.caller]

    def evict(self, now: float, ttl: float, max_size: int) -> None:
        order = self._order
        cutoff = now - ttl if ttl > 0 else None
        while order and (len(order) > max_size or (cutoff is not None and order[0].time < cutoff)):
            self._release(order.popleft())

    def retire(self, callers: Sequence[int]) -> None:
        for caller in callers:
            obs = self._callers.get(caller)
            if obs is not None:
                self._release(obs)

    def callers(self, keys: Sequence[int]) -> dict[int, int]:
        out = {}
        for key in keys:
            obs = self._callers.get(key)
            if obs is not None and obs.live:
                out[key] = obs.text
        return out

    def band_members(self, bands: Sequence[int]) -> dict[int, set[int]]:
        out = {}
        for band in bands:
            members = self._bands.get(band)
            if members is None:
                continue
            out[band] = set(members) if isinstance(members, set) else {members}
        return out

    def texts(self, keys: Sequence[int]) -> dict[int, TextRecord]:
        out = {}
        for key in keys:
            rec = self._texts.get(key)
            if rec is not None:
                sig = None if rec.sig is None else np.frombuffer(rec.sig, dtype=np.uint32)
                out[key] = TextRecord(rec.count, rec.cluster, rec.first_seen, sig)
        return out

    def add(self, observations: Sequence[NewObservation], now: float) -> None:
        for new in observations:
            rec = self._texts.get(new.text)
            if rec is None:
                sig = None if new.sig is None else new.sig.tobytes()
                rec = self._texts[new.text] = _Text(new.cluster, new.first_seen, sig, new.bands)
                for band in new.bands:
                    members = self._bands.get(band)
                    if members is None:
                        self._bands[band] = new.text
                    elif isinstance(members, set):
                        members.add(new.text)
                    elif members != new.text:
                        self._bands[band] = {members, new.text}
            rec.count += 1
            obs = _Obs(now, new.text, new.caller)
            self._order.append(obs)
            if new.caller is not None:
                old = self._callers.get(new.caller)
                if old is not None and old is not obs:
                    self._release(old)
                self._callers[new.caller] = obs


# ------------------------------------------------------------------ the window


class DuplicateWindow:
    """Count exact and near repeats of comments against a rolling window.

    Args:
        config: size, time-to-live, threshold and MinHash settings.
        store: where the window lives; a fresh :class:`MemoryStore` by default.
        clock: seconds since the epoch; ``time.time`` by default.

    Example:
        >>> window = DuplicateWindow(WindowConfig(max_size=1000))
        >>> found = window.observe([WindowItem("兼职日结加微信abc"), WindowItem("兼职日结 加微信abc")])
        >>> found[0].exact_count, found[0].cluster_id == found[1].cluster_id
        (1, True)
    """

    def __init__(self, config: WindowConfig | None = None, store=None, clock=time.time):
        self.config = config or WindowConfig()
        self.store = store if store is not None else MemoryStore()
        self.signer = Signer(self.config)
        self.clock = clock
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        return self.store.backend

    def __len__(self) -> int:
        """Comments held; expired ones leave at the next :meth:`observe` or :meth:`evict`."""
        with self._lock:
            return len(self.store)

    def evict(self, now: float | None = None) -> None:
        """Drop the comments that the size or time limit rules out at ``now`` (default: the clock)."""
        with self._lock:
            self._evict(self.clock() if now is None else now)

    def clear(self) -> None:
        """Forget every comment."""
        with self._lock:
            self.store.clear()

    def _evict(self, now: float) -> None:
        self.store.evict(now, self.config.ttl_seconds, self.config.max_size)

    def observe(self, items: Sequence[WindowItem], now: float | None = None,
                record: bool = True) -> list[Duplicates]:
        """Count each comment's repeats among the window and the other comments of
        ``items``, then add the comments to the window.

        A comment whose id is already in the window with the same text is not
        added again (``seen_before``); with a different text, the new text
        replaces the old one.

        Args:
            items: the comments, in request order.
            now: the time they are seen, seconds since the epoch (default: the
                clock). Should not decrease from call to call.
            record: ``False`` to look up without adding anything.

        Returns:
            One :class:`Duplicates` per item, in order.
        """
        if now is None:
            now = self.clock()
        signer = self.signer
        forms = [dedup_form(item.text) for item in items]
        keys = [hash64(form) for form in forms]
        # Signatures and band keys once per distinct text, outside the lock.
        sigs: dict[int, np.ndarray | None] = {}
        bands: dict[int, tuple[int, ...]] = {}
        for form, key in zip(forms, keys):
            if key not in sigs:
                sig = signer.signature(shingle_form(form))
                sigs[key] = sig
                bands[key] = tuple(signer.band_keys(sig)) if sig is not None else ()
        with self._lock:
            return self._observe(items, keys, sigs, bands, now, record)

    def _observe(self, items, keys, sigs, bands, now, record) -> list[Duplicates]:
        store = self.store
        self._evict(now)
        callers = [item.key for item in items if item.key is not None]
        in_window = store.callers(callers) if callers else {}
        seen_before = [item.key is not None and in_window.get(item.key) == key for item, key in zip(items, keys)]
        replaced = [item.key for item, key, seen in zip(items, keys, seen_before)
                    if item.key is not None and item.key in in_window and not seen]
        if record and replaced:
            store.retire(replaced)
            # The id's old text has left the window, so no comment of that id in
            # this request is already there, even one repeating the old text.
            gone = set(replaced)
            seen_before = [seen and item.key not in gone for item, seen in zip(items, seen_before)]

        # Copies in this request, counting only comments not already in the window.
        request_count: dict[int, int] = {}
        for key, seen in zip(keys, seen_before):
            request_count.setdefault(key, 0)
            if not seen:
                request_count[key] += 1
        distinct = list(request_count)

        all_bands = [b for key in distinct for b in bands[key]]
        members = store.band_members(all_bands) if all_bands else {}
        window_candidates = {
            key: {m for b in bands[key] for m in members.get(b, ())} - {key} for key in distinct
        }
        wanted = set(distinct).union(*window_candidates.values()) if distinct else set()
        records = store.texts(list(wanted))

        threshold = self.signer.threshold
        near: dict[int, set[int]] = {}
        for key in distinct:
            sig = sigs[key]
            found = set()
            for cand in window_candidates[key]:
                rec = records.get(cand)
                if rec is not None and rec.sig is not None and sig is not None and \
                        Signer.similarity(sig, rec.sig) >= threshold:
                    found.add(cand)
            near[key] = found
        # Near duplicates inside the request, by the same banding.
        local: dict[int, list[int]] = {}
        for key in distinct:
            for b in bands[key]:
                local.setdefault(b, []).append(key)
        for key in distinct:
            cands = {m for b in bands[key] for m in local[b]} - {key} - near[key]
            for cand in cands:
                if Signer.similarity(sigs[key], sigs[cand]) >= threshold:
                    near[key].add(cand)

        def copies_of(key: int) -> int:
            rec = records.get(key)
            return (rec.count if rec is not None else 0) + request_count.get(key, 0)

        # Clusters: a text in the window keeps its own; a new text joins its
        # oldest near duplicate's, or starts one named after itself.
        cluster: dict[int, tuple[float, int]] = {}
        for key in distinct:
            rec = records.get(key)
            if rec is not None:
                cluster[key] = (rec.first_seen, rec.cluster)
                continue
            options = []
            for cand in near[key]:
                crec = records.get(cand)
                if crec is not None:
                    options.append((crec.first_seen, crec.cluster))
                elif cand in cluster:
                    options.append(cluster[cand])
            cluster[key] = min(options) if options else (now, key)

        out = []
        for key, seen in zip(keys, seen_before):
            first_seen, cid = cluster[key]
            out.append(Duplicates(
                exact_count=copies_of(key) - 1,
                near_count=sum(copies_of(k) for k in near[key]),
                cluster_id=key_hex(cid),
                first_seen=first_seen,
                seen_before=seen,
            ))
        if record:
            store.add([
                NewObservation(item.key, key, cluster[key][1], cluster[key][0], sigs[key], bands[key])
                for item, key, seen in zip(items, keys, seen_before) if not seen
            ], now)
            self._evict(now)
        return out
