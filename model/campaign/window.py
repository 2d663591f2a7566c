"""Exact and near-duplicate detection over a rolling window of recent comments.

A comment is compared in three forms, all derived from its normalised text
(:func:`zhenping.model.normalize.normalize_text`):

* the **dedup form**: lower-cased, white space removed. Two comments with the
  same dedup form are *exact* repeats.
* the **shingle form**: the dedup form without what campaigns insert to dodge
  filters: punctuation, emoji and other symbols, bracketed emoji codes
  (``[doge]``), and filler particles (的 了 啊 呀 哦 嗯 哈 吧 呢). A text that is
  nothing but those keeps its symbols (an emoji wall), or its fillers (哈哈哈).
  Comments of ``shingle`` characters or more are compared by the MinHash of
  their character ``shingle``-grams (:class:`Signer`); two are *near*
  duplicates when the estimated Jaccard similarity of their shingle sets
  reaches ``threshold``. Shorter ones (好听, 好听!!!, 6) are near duplicates only
  when their shingle forms are equal.
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
:class:`zhenping.model.campaign.redis_store.RedisStore` (several replicas share one
window).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import NamedTuple

import numpy as np

from zhenping.model.campaign.config import WindowConfig

try:  # the window's state and signing compiled (model/campaign/_bands.c); absent where the build had no C compiler
    from zhenping.model.campaign import _bands as _compiled
    from zhenping.model.campaign._bands import WindowCore as _CompiledIndex
except ImportError:  # pragma: no cover - depends on the build
    _compiled = _CompiledIndex = None

# LSH banding weighs a missed pair (false negative) above a needless comparison
# (false positive): every candidate is checked against the threshold anyway.
_FP_WEIGHT, _FN_WEIGHT = 0.3, 0.7
SIGN_CHUNK = 8192  # shingles signed in one array operation (rows of num_perm values)
# Texts one LSH band bucket takes at most: a text family with thousands of variants (a viral
# meme, or variants made to flood the window) would otherwise make every new variant look up and
# compare thousands of candidates. A full bucket takes no new text until old ones leave; the
# text is still found through its other bands, and its cluster through the bucket's oldest texts.
BAND_TEXTS = 64
TEXT_CACHE = 4096  # texts whose key, signature and band keys a window remembers (then forgets all at once)
_MIX_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # local band keys: golden-ratio multiplier
_MIX_FINAL = np.uint64(0xBF58476D1CE4E5B9)  # and splitmix64's finaliser constant
# Shingle hashes: a polynomial over the shingle's code points (FNV-1's 64-bit prime), then
# MurmurHash3's 64-bit finaliser; its high 32 bits are the shingle's hash.
_GRAM_BASE = np.uint64(0x100000001B3)
_FMIX_1, _FMIX_2, _FMIX_SHIFT = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53), np.uint64(33)
_HIGH = np.uint64(32)


# ------------------------------------------------------------------ text forms


def dedup_form(normalized: str) -> str:
    """The form exact repeats share: lower-cased, white space removed.

    Example:
        >>> dedup_form("好评 好评 GOOD")
        '好评好评good'
    """
    return "".join(normalized.lower().split())


class _Drop(dict):
    """``str.translate`` table that drops the characters of some Unicode categories,
    filled in as characters are met (up to ``_DROP_TABLE`` of them)."""

    def __init__(self, drops) -> None:
        super().__init__()
        self._drops = drops

    def __missing__(self, code: int) -> int | None:
        value = None if self._drops(unicodedata.category(chr(code))) else code
        if len(self) < _DROP_TABLE:
            self[code] = value
        return value


_DROP_TABLE = 1 << 16
_DROP_PUNCTUATION = _Drop(lambda category: category[0] == "P")
# Punctuation, symbols (emoji, ♪, ¶) and combining marks (emoji variation selectors).
_DROP_DECORATION = _Drop(lambda category: category[0] in "PS" or category == "Mn")
_DROP_FILLERS = str.maketrans("", "", "的了啊呀哦嗯哈吧呢")
_EMOJI_CODE = re.compile(r"\[[^\[\]]{1,8}\]")  # [doge], [赞], [多多笑哭]: platforms' emoji codes


def shingle_form(form: str) -> str:
    """The dedup form without punctuation, emoji and other symbols, bracketed emoji
    codes and filler particles: what near duplicates are compared on.

    A text of nothing but symbols and codes keeps them (without punctuation); one
    of nothing but fillers keeps those.

    Example:
        >>> shingle_form("好听!!!。")
        '好听'
        >>> shingle_form("💯质量很好啊[doge]就是因为好,买了多次~")
        '质量很好就是因为好买多次'
        >>> shingle_form("[good][good]!"), shingle_form("哈哈哈")
        ('goodgood', '哈哈哈')
    """
    if form.isalnum():  # letters and digits only (most comments): only fillers to drop
        return form.translate(_DROP_FILLERS) or form
    content = _EMOJI_CODE.sub("", form) if "[" in form else form
    content = content.translate(_DROP_DECORATION)
    if not content:  # an emoji wall: compared on its symbols
        return form.translate(_DROP_PUNCTUATION)
    return content.translate(_DROP_FILLERS) or content


def visible_length(form: str) -> int:
    """Characters of a dedup form as a reader sees them: a bracketed emoji code,
    which the platform draws as one picture, counts as one.

    Example:
        >>> visible_length("加油[加油]"), visible_length("[感冒][感冒][感冒]"), visible_length("好听")
        (3, 3, 2)
    """
    if "[" not in form:
        return len(form)
    return len(form) - sum(m.end() - m.start() - 1 for m in _EMOJI_CODE.finditer(form))


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


def _shingle_hashes(points: np.ndarray, at: np.ndarray, k: int) -> np.ndarray:
    """uint32 hashes of the ``k``-code-point shingles of ``points`` (uint64) starting at ``at``."""
    h = points[at]
    for j in range(1, k):  # array arithmetic wraps modulo 2**64
        h *= _GRAM_BASE
        h += points[at + j]
    h ^= h >> _FMIX_SHIFT
    h *= _FMIX_1
    h ^= h >> _FMIX_SHIFT
    h *= _FMIX_2
    h ^= h >> _FMIX_SHIFT
    return (h >> _HIGH).astype(np.uint32)


class Signer:
    """MinHash signatures and LSH band keys of shingle forms.

    A shingle's hash is the high 32 bits of MurmurHash3's 64-bit finaliser of
    a polynomial over its code points; signature value
    ``i`` is the least ``(a_i * hash + b_i) mod 2**32`` over the form's
    shingles, with the permutations ``a``, ``b`` of datasketch's MinHash for the
    seed. Nothing depends on the process, so every replica computes the same
    signatures; all shingles of a request are hashed and permuted in a few array
    operations.

    Args:
        config: the window's settings (threshold, num_perm, shingle, seed).

    Example:
        >>> signer = Signer(WindowConfig())
        >>> sig = signer.signature("这首歌让我想起了高三的晚自习")
        >>> signer.similarity(sig, signer.signature("这首歌让我想起了高三的晚自习啊")) >= 0.6
        True
    """

    def __init__(self, config: WindowConfig, compiled: bool | None = None):
        """``compiled``: sign with the compiled code of ``model/campaign/_bands.c`` (the same
        values); ``None``, where it was built."""
        from datasketch import MinHash

        self.num_perm = config.num_perm
        self.shingle = config.shingle
        self.threshold = config.threshold
        a, b = MinHash(num_perm=config.num_perm, seed=config.seed).permutations
        self._a = np.asarray(a, dtype=np.uint64).astype(np.uint32)[:, None]
        self._b = np.asarray(b, dtype=np.uint64).astype(np.uint32)[:, None]
        self.bands, self.rows = lsh_params(config.threshold, config.num_perm)
        self._persons = [i.to_bytes(2, "big") for i in range(self.bands)]
        self._band_seeds = np.array([hash64(f"band:{i}") for i in range(self.bands)], dtype=np.uint64)
        if compiled and _compiled is None:
            raise RuntimeError("the compiled signing (zhenping.model.campaign._bands) was not built")
        self._compiled = _compiled if compiled or compiled is None else None

    def signature(self, form: str) -> np.ndarray | None:
        """The signature of a shingle form, or ``None`` for an empty one.

        A form shorter than ``shingle`` characters gets a constant signature
        derived from the whole form: it is similar (1.0) only to itself.
        """
        return self.signatures([form])[0]

    def signatures(self, forms: Sequence[str]) -> list[np.ndarray | None]:
        """:meth:`signature` of each form, signed together: the shingles of all
        forms are hashed and go through the permutations in one array operation."""
        sigs, _ = self.sign(forms)
        return [None if sig is None else sig.copy() for sig in sigs]  # not views of one batch

    def sign(self, forms: Sequence[str],
             bands: str | None = None) -> tuple[list[np.ndarray | None], list[tuple[int, ...]]]:
        """Signatures of many forms at once, and their band keys.

        Args:
            forms: shingle forms.
            bands: ``"local"`` for :meth:`local_band_keys`, ``"shared"`` for
                :meth:`band_keys`, ``None`` for none.

        Returns:
            ``(signatures, band keys)`` in the order of ``forms``: ``None`` and ``()``
            for an empty form. The signatures are rows of one array (views), the
            band keys ``()`` for every form when ``bands`` is ``None``.
        """
        n = len(forms)
        sigs: list[np.ndarray | None] = [None] * n
        keys: list[tuple[int, ...]] = [()] * n
        present = [j for j, form in enumerate(forms) if form]
        if not present:
            return sigs, keys
        k = self.shingle
        long_rows = [r for r, j in enumerate(present) if len(forms[j]) >= k]
        if len(long_rows) == len(present):
            mat = self._sign_long([forms[j] for j in present])
        else:
            mat = np.empty((len(present), self.num_perm), dtype=np.uint32)
            if long_rows:
                mat[long_rows] = self._sign_long([forms[present[r]] for r in long_rows])
            short = set(long_rows)
            for r, j in enumerate(present):
                if r not in short:  # a constant signature derived from the whole form
                    mat[r] = hash64(forms[j]) & 0xFFFFFFFF
        rows = list(mat)
        for j, row in zip(present, rows):
            sigs[j] = row
        if bands is not None:
            band_list = self._local_band_matrix(mat) if bands == "local" else [tuple(self.band_keys(r)) for r in rows]
            for j, band in zip(present, band_list):
                keys[j] = band
        return sigs, keys

    def _sign_long(self, forms: list[str]) -> np.ndarray:
        """Signatures (one row each) of forms of ``shingle`` characters or more, in
        groups of about ``SIGN_CHUNK`` shingles, so a request of long texts does not
        build one huge (shingles x permutations) array."""
        k = self.shingle
        if self._compiled is not None:  # one call, holding the interpreter lock throughout
            raw = self._compiled.minhash(forms, k, self._a, self._b)
            return np.frombuffer(raw, dtype=np.uint32).reshape(len(forms), self.num_perm)
        counts = [len(form) - k + 1 for form in forms]
        if sum(counts) <= SIGN_CHUNK:
            return self._sign(forms, counts)
        parts = []
        start = size = 0
        for i, count in enumerate(counts):
            size += count
            if size >= SIGN_CHUNK or i == len(forms) - 1:
                parts.append(self._sign(forms[start:i + 1], counts[start:i + 1]))
                start, size = i + 1, 0
        return np.concatenate(parts)

    def _sign(self, forms: list[str], counts: list[int]) -> np.ndarray:
        """Signatures of forms of ``shingle`` characters or more (``counts`` shingles
        each), in a few array operations over all their shingles."""
        k = self.shingle
        # The code points of every form, end to end; shingle i of form f starts at
        # position offset[f] + i.
        points = np.frombuffer("".join(forms).encode("utf-32-le"), dtype="<u4").astype(np.uint64)
        per_form = np.asarray(counts, dtype=np.intp)
        starts = np.zeros(len(forms), dtype=np.intp)  # each form's first shingle among all shingles
        np.cumsum(per_form[:-1], out=starts[1:])
        lengths = np.fromiter(map(len, forms), dtype=np.intp, count=len(forms))
        offsets = np.zeros(len(forms), dtype=np.intp)
        np.cumsum(lengths[:-1], out=offsets[1:])
        at = np.arange(int(per_form.sum()), dtype=np.intp)
        at += np.repeat(offsets - starts, per_form)
        hashes = _shingle_hashes(points, at, k)
        # Array arithmetic wraps modulo 2**32; one row per permutation, so that each
        # form's minimum runs over contiguous values.
        permuted = self._a * hashes
        permuted += self._b
        return np.ascontiguousarray(np.minimum.reduceat(permuted, starts, axis=1).T)

    def band_keys(self, sig: np.ndarray) -> list[int]:
        """One 64-bit key per band; two signatures share a band when a key is equal.

        BLAKE2b of the band's values: the same in every process, so replicas
        sharing a Redis window agree (given the same shingle form, shingle size,
        threshold, permutations and seed; a window written with other ones finds
        fewer near copies until its comments leave).
        """
        raw = sig.tobytes()
        width = 4 * self.rows
        blake2b = hashlib.blake2b
        return [
            int.from_bytes(blake2b(raw[i * width:(i + 1) * width], digest_size=8, person=person).digest(), "big")
            for i, person in enumerate(self._persons)
        ]

    def local_band_keys(self, sigs: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
        """Band keys of many signatures at once, for a window that never leaves
        this process (:class:`MemoryStore`): a 64-bit multiply-xorshift hash of
        each band's values, in one array operation. Two signatures share a key
        when their band values are equal (and, like any 64-bit hash, by a
        negligible chance otherwise: a candidate is checked against the
        threshold anyway). Not the keys of :meth:`band_keys`."""
        if not len(sigs):
            return []
        return self._local_band_matrix(np.stack(sigs))

    def _local_band_matrix(self, mat: np.ndarray) -> list[tuple[int, ...]]:
        """:meth:`local_band_keys` of the rows of a (signatures x num_perm) array."""
        n = len(mat)
        if self._compiled is not None:
            return self._compiled.local_bands(np.ascontiguousarray(mat, dtype=np.uint32), n, self.num_perm,
                                              self.bands, self.rows, self._band_seeds)
        width = self.bands * self.rows
        if self.rows % 2 == 0:  # two values of a band read as one 64-bit word: half the mixing rounds
            v = np.ascontiguousarray(mat[:, :width], dtype=np.uint32).view(np.uint64).reshape(
                n, self.bands, self.rows // 2)
        else:
            v = mat[:, :width].reshape(n, self.bands, self.rows).astype(np.uint64)
        h = np.broadcast_to(self._band_seeds, (n, self.bands)).copy()
        for r in range(v.shape[2]):  # array arithmetic wraps modulo 2**64
            h ^= v[:, :, r]
            h *= _MIX_MULTIPLIER
            h ^= h >> np.uint64(29)
        h *= _MIX_FINAL
        h ^= h >> np.uint64(32)
        return list(map(tuple, h.tolist()))

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        """Estimated Jaccard similarity: the share of equal signature values."""
        return float(np.count_nonzero(a == b)) / len(a)


# ------------------------------------------------------------------ records


class WindowUnavailable(RuntimeError):
    """The window's store cannot be reached (a shared Redis is down); the message says which."""


class Duplicates(NamedTuple):
    """What the window knows about one comment's repeats (a named tuple: one is made
    per distinct text of every request, and a tuple is the cheapest immutable record to make).

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
    """A distinct text in the window, as a store returns it; ``sig``, its signature's
    uint32 values as bytes (``None`` for an empty form)."""

    count: int
    cluster: int
    first_seen: float
    sig: bytes | None


class NewObservation(NamedTuple):
    """One comment to add to the store."""

    caller: int | None
    text: int
    cluster: int
    first_seen: float
    sig: np.ndarray | None
    bands: tuple[int, ...]


# ------------------------------------------------------------------ in-process store


class _Text:
    __slots__ = ("count", "cluster", "first_seen", "sig", "bands")

    def __init__(self, cluster: int, first_seen: float, sig: bytes | None, bands: tuple[int, ...]):
        self.count = 0
        self.cluster = cluster
        self.first_seen = first_seen
        self.sig = sig
        self.bands = bands


def compiled_index_available() -> bool:
    """Whether the compiled window core (``zhenping.model.campaign._bands``) was built."""
    return _CompiledIndex is not None


class MemoryStore:
    """The window in this process's memory; not shared between processes.

    Memory is bounded by ``max_size`` observations: each costs three entries of
    plain numbers (no object of its own for the garbage collector to track), each
    distinct text its signature and band entries (see
    ``benchmarks/bench_campaign.py`` for measured bytes per comment).
    Not thread-safe by itself: :class:`DuplicateWindow` serialises access.

    Args:
        index: where the window's state lives: ``"compiled"`` (``WindowCore`` of
            ``model/campaign/_bands.c``: observations, text records, caller keys,
            signatures and band buckets; near copies found in one call per request,
            no Python object per comment), ``"python"`` (deques, dicts and sets), or
            ``"auto"`` (the default: compiled where it was built). The two give the
            same answers.
    """

    backend = "memory"
    local_bands = True  # band keys never leave the process: the window may use Signer.local_band_keys

    def __init__(self, index: str = "auto") -> None:
        if index not in ("auto", "compiled", "python"):
            raise ValueError(f"index must be 'auto', 'compiled' or 'python', not {index!r}")
        if index == "compiled" and _CompiledIndex is None:
            raise RuntimeError("the compiled window (zhenping.model.campaign._bands) was not built: "
                               "reinstall with a C compiler present, or use index='python'")
        self._core = _CompiledIndex(BAND_TEXTS) if index != "python" and _CompiledIndex is not None else None
        self.index = "python" if self._core is None else "compiled"
        # Observations in arrival order, one entry each in three parallel deques. An observation's
        # sequence number counts from the first one ever added; the oldest held is number _head.
        self._times: deque[float] = deque()
        self._keys: deque[int] = deque()  # text keys
        self._ids: deque[int | None] = deque()  # caller keys
        self._head = 0
        self._gone: set[int] = set()  # observations released before they leave the deques
        self._texts: dict[int, _Text] = {}
        self._bands: dict[int, int | set[int]] = {}
        self._callers: dict[int, int] = {}  # caller key -> sequence number of its observation
        if self._core is not None:  # every call goes to the compiled window
            core = self._core
            self.evict = core.evict
            self.retire = core.retire
            self.callers = core.callers
            self.band_members = core.members
            self.held = core.held
            self.add = core.add
            self.near_many = core.near_many
            self.bucket_sizes = core.bucket_sizes

    def __len__(self) -> int:
        return len(self._times) if self._core is None else len(self._core)

    @property
    def distinct_texts(self) -> int:
        return len(self._texts) if self._core is None else self._core.distinct_texts

    @property
    def ids_held(self) -> int:
        """Caller keys with an observation in the window."""
        return len(self._callers) if self._core is None else self._core.ids_held

    def clear(self) -> None:
        self._times.clear()
        self._keys.clear()
        self._ids.clear()
        self._head = 0
        self._gone.clear()
        self._texts.clear()
        self._bands.clear()
        self._callers.clear()
        if self._core is not None:
            self._core.clear()

    @property
    def finds_near(self) -> bool:
        """Whether :meth:`near_many` answers (the compiled window); else the window
        compares candidates from :meth:`band_members` and :meth:`texts` itself."""
        return self._core is not None

    def near_many(self, keys: Sequence[int], sigs: Sequence[np.ndarray | None],
                  bands: Sequence[tuple[int, ...]], min_equal: int) -> list[set[int]]:
        """For each text (key, signature, band keys), the held texts sharing a band
        with it whose signatures agree in ``min_equal`` values or more (the compiled
        window only)."""
        raise RuntimeError("near_many needs the compiled window; this store keeps it in Python")

    def bucket_sizes(self) -> list[int]:
        """Texts in each band bucket held, one number per band key."""
        return [len(m) if isinstance(m, set) else 1 for m in self._bands.values()]

    def _drop(self, text: int) -> None:
        """One observation of ``text`` fewer; the text leaves with its last."""
        rec = self._texts[text]
        rec.count -= 1
        if rec.count <= 0:
            del self._texts[text]
            table = self._bands
            for band in rec.bands:
                members = table.get(band)
                if members == text:  # most bands hold one text
                    del table[band]
                elif isinstance(members, set):
                    members.discard(text)
                    if len(members) == 1:
                        table[band] = next(iter(members))

    def _release(self, seq: int, caller: int) -> None:
        """Release observation ``seq`` (still in the deques) of caller key ``caller`` early."""
        if seq not in self._gone:
            self._gone.add(seq)
            self._drop(self._keys[seq - self._head])
        if self._callers.get(caller) == seq:
            del self._callers[caller]

    def evict(self, now: float, ttl: float, max_size: int) -> None:
        times, keys, ids, gone, callers = self._times, self._keys, self._ids, self._gone, self._callers
        cutoff = now - ttl if ttl > 0 else None
        while times and (len(times) > max_size or (cutoff is not None and times[0] < cutoff)):
            times.popleft()
            text = keys.popleft()
            caller = ids.popleft()
            seq = self._head
            self._head = seq + 1
            if seq in gone:
                gone.remove(seq)
            else:
                self._drop(text)
            if caller is not None and callers.get(caller) == seq:
                del callers[caller]

    def retire(self, callers: Sequence[int]) -> None:
        for caller in callers:
            seq = self._callers.get(caller)
            if seq is not None:
                self._release(seq, caller)

    def callers(self, keys: Sequence[int]) -> dict[int, int]:
        out = {}
        known, gone, texts, head = self._callers, self._gone, self._keys, self._head
        for key in keys:
            seq = known.get(key)
            if seq is not None and seq not in gone:
                out[key] = texts[seq - head]
        return out

    def band_members(self, bands: Sequence[int]) -> dict[int, set[int]]:
        table = self._bands
        out = {}
        for band in table.keys() & bands:  # most bands of a request are in no other text
            members = table[band]
            # The window's own set, not a copy: read under the window's lock, before anything is added.
            out[band] = members if isinstance(members, set) else {members}
        return out

    def texts(self, keys: Sequence[int]) -> dict[int, TextRecord]:
        if self._core is not None:
            return {key: TextRecord(*rec) for key, rec in self._core.texts(keys).items()}
        out = {}
        for key in keys:
            rec = self._texts.get(key)
            if rec is not None:
                out[key] = TextRecord(rec.count, rec.cluster, rec.first_seen, rec.sig)
        return out

    def held(self, keys: Iterable[int]) -> dict:
        """The store's own records (``count``, ``cluster``, ``first_seen``) of the given text
        keys held, not copies: for the window, which reads them under its lock before it adds
        anything."""
        texts = self._texts
        return {key: rec for key in keys if (rec := texts.get(key)) is not None}

    def add(self, observations: Sequence[NewObservation], now: float) -> None:
        texts, table, callers = self._texts, self._bands, self._callers
        times, keys, ids = self._times, self._keys, self._ids
        for caller, text, cluster, first_seen, sig, bands in observations:
            rec = texts.get(text)
            if rec is None:
                rec = texts[text] = _Text(cluster, first_seen, None if sig is None else sig.tobytes(), bands)
                if table.keys().isdisjoint(bands):  # most bands are in no other text
                    table.update(dict.fromkeys(bands, text))
                else:
                    for band in bands:
                        members = table.get(band)
                        if members is None:
                            table[band] = text
                        elif isinstance(members, set):
                            if len(members) < BAND_TEXTS:
                                members.add(text)
                        elif members != text:
                            table[band] = {members, text}
            rec.count += 1
            times.append(now)
            keys.append(text)
            ids.append(caller)
            if caller is not None:
                old = callers.get(caller)
                if old is not None:  # the id's earlier observation (in this batch: ids already held were retired)
                    self._release(old, caller)
                callers[caller] = self._head + len(times) - 1


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
        # A store that keeps its band keys in this process takes the fast local ones.
        self._local_bands = bool(getattr(self.store, "local_bands", False))
        # Signature values two texts must share to reach the threshold (n / num_perm >= threshold).
        width = self.config.num_perm
        self._min_equal = next((n for n in range(width + 1) if n / width >= self.config.threshold), width + 1)
        self._cache: dict[str, tuple[int, int, np.ndarray | None, tuple[int, ...]]] = {}

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
        return self.observe_keyed(items, now, record)[0]

    def observe_keyed(self, items: Sequence[WindowItem], now: float | None = None,
                      record: bool = True) -> tuple[list[Duplicates], list[int], list[int]]:
        """:meth:`observe`, also returning each item's text key (:func:`hash64` of
        its dedup form) and its length as shown (:func:`visible_length`)."""
        return self.observe_texts([item.text for item in items], [item.key for item in items], now, record)

    def observe_texts(self, texts: Sequence[str], callers: Sequence[int | None], now: float | None = None,
                      record: bool = True) -> tuple[list[Duplicates], list[int], list[int]]:
        """:meth:`observe_keyed` of the comments given as two columns, their normalised
        texts and their :func:`caller_key` keys (``None`` for no id), without a
        :class:`WindowItem` per comment."""
        if now is None:
            now = self.clock()
        keys, lengths, sigs, bands = self._prepare(texts)
        with self._lock:
            return self._observe(callers, keys, sigs, bands, now, record), keys, lengths

    def _prepare(self, texts: Sequence[str]):
        """Keys, visible lengths, and signatures and band keys once per distinct
        text, outside the lock; recent texts come from a cache."""
        cache = self._cache
        keys: list[int] = []
        lengths: list[int] = []
        sigs: dict[int, np.ndarray | None] = {}
        bands: dict[int, tuple[int, ...]] = {}
        missing: dict[str, tuple[int, str, int]] = {}  # text -> (key, dedup form, visible length)
        for text in texts:
            hit = cache.get(text)
            if hit is None:
                pending = missing.get(text)
                if pending is None:
                    form = dedup_form(text)
                    pending = missing[text] = (hash64(form), form, visible_length(form))
                keys.append(pending[0])
                lengths.append(pending[2])
            else:
                key, length, sig, band = hit
                keys.append(key)
                lengths.append(length)
                sigs[key] = sig
                bands[key] = band
        if missing:
            todo = {}  # key -> shingle form, once per key not known yet
            for key, form, _ in missing.values():
                if key not in bands and key not in todo:
                    todo[key] = shingle_form(form)
            signed, banded = self.signer.sign(list(todo.values()), "local" if self._local_bands else "shared")
            sigs.update(zip(todo, signed))
            bands.update(zip(todo, banded))
            if len(cache) + len(missing) > TEXT_CACHE:
                cache.clear()
            for text, (key, _, length) in missing.items():
                cache[text] = (key, length, sigs[key], bands[key])
        return keys, lengths, sigs, bands

    def _near_in_window(self, distinct, sigs, bands, all_bands):
        """Near duplicates of each distinct text among the window's, from the store's
        band buckets and stored signatures; and the records of the texts and of every
        candidate."""
        store = self.store
        members = store.band_members(all_bands) if all_bands else {}
        window_candidates: dict[int, set[int]] = {}
        wanted = set(distinct)
        if members:
            hit = members.keys()
            for key in distinct:
                key_bands = bands[key]
                if hit.isdisjoint(key_bands):  # most texts share no band with the window
                    continue
                cands: set[int] = set()
                for b in key_bands:
                    m = members.get(b)
                    if m:
                        cands |= m
                cands.discard(key)
                window_candidates[key] = cands
                wanted |= cands
        records = store.texts(list(wanted))

        threshold = self.signer.threshold
        width = self.signer.num_perm
        nbytes = 4 * width
        near: dict[int, set[int]] = {}
        for key in distinct:
            found = set()
            cands = window_candidates.get(key)
            sig = sigs[key]
            if cands and sig is not None:
                # Candidates' signatures as stored (bytes), read as one array: compared all at once.
                pool = [(cand, rec.sig) for cand in cands
                        if (rec := records.get(cand)) is not None and rec.sig is not None and len(rec.sig) == nbytes]
                if pool:
                    stacked = np.frombuffer(b"".join([p[1] for p in pool]), dtype=np.uint32).reshape(len(pool), width)
                    equal = np.count_nonzero(stacked == sig, axis=1).tolist()
                    found = {cand for (cand, _), n in zip(pool, equal) if n / width >= threshold}
            near[key] = found
        return near, records

    def _observe(self, callers, keys, sigs, bands, now, record) -> list[Duplicates]:
        store = self.store
        self._evict(now)
        given = [caller for caller in callers if caller is not None]
        in_window = store.callers(given) if given else {}
        if in_window:
            seen_before = [caller is not None and in_window.get(caller) == key for caller, key in zip(callers, keys)]
            replaced = [caller for caller, key, seen in zip(callers, keys, seen_before)
                        if caller is not None and caller in in_window and not seen]
            if record and replaced:
                store.retire(replaced)
                # The id's old text has left the window, so no comment of that id in
                # this request is already there, even one repeating the old text.
                gone = set(replaced)
                seen_before = [seen and caller not in gone for caller, seen in zip(callers, seen_before)]
        else:
            seen_before = [False] * len(keys)

        # Copies in this request, counting only comments not already in the window.
        request_count: dict[int, int] = {}
        for key, seen in zip(keys, seen_before):
            request_count[key] = request_count.get(key, 0) + (not seen)
        distinct = list(request_count)

        all_bands = list(chain.from_iterable(map(bands.__getitem__, distinct)))
        threshold = self.signer.threshold
        similarity = Signer.similarity
        near: dict[int, set[int]]
        if getattr(store, "finds_near", False):  # the compiled table compares the candidates itself
            found_sets = store.near_many(distinct, [sigs[key] for key in distinct],
                                         [bands[key] for key in distinct], self._min_equal)
            near = dict(zip(distinct, found_sets))
            records = store.held(set(distinct).union(*found_sets))
        else:
            near, records = self._near_in_window(distinct, sigs, bands, all_bands)
        # Near duplicates inside the request, by the same banding: only where two
        # of the request's texts share a band key.
        if len(set(all_bands)) < len(all_bands):
            ordered = sorted(all_bands)
            shared = {b for b, after in zip(ordered, ordered[1:]) if b == after}  # bands of two or more texts
            sharing = [key for key in distinct if not shared.isdisjoint(bands[key])]
            local: dict[int, list[int]] = {}
            for key in sharing:
                for b in shared.intersection(bands[key]):
                    local.setdefault(b, []).append(key)
            for key in sharing:
                cands = {m for b in shared.intersection(bands[key]) for m in local[b]} - {key} - near[key]
                for cand in cands:
                    if similarity(sigs[key], sigs[cand]) >= threshold:
                        near[key].add(cand)

        copies: dict[int, int] = {}
        for key in distinct:
            rec = records.get(key)
            copies[key] = request_count[key] if rec is None else rec.count + request_count[key]
        for cands in near.values():
            for cand in cands:
                if cand not in copies:
                    rec = records.get(cand)
                    copies[cand] = rec.count if rec is not None else 0

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
        made: dict[tuple[int, bool], Duplicates] = {}  # immutable: repeats of a text share one
        for key, seen in zip(keys, seen_before):
            dup = made.get((key, seen))
            if dup is None:
                first_seen, cid = cluster[key]
                found = near[key]
                near_count = sum(map(copies.__getitem__, found)) if found else 0
                dup = made[(key, seen)] = Duplicates(copies[key] - 1, near_count, key_hex(cid), first_seen, seen)
            out.append(dup)
        if record:
            store.add([
                NewObservation(caller, key, cluster[key][1], cluster[key][0], sigs[key], bands[key])
                for caller, key, seen in zip(callers, keys, seen_before) if not seen
            ], now)
            self._evict(now)
        return out
