"""Whole chunks decoded straight into the block's memory, against zarr's own read."""

import mmap

import numcodecs
import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, TransposeCodec, ZstdCodec
from zarr.storage import MemoryStore

from dkmeans._engine import chunk_read
from dkmeans._engine import parallel as PL
from dkmeans._engine import store as S

V3_COMPRESSORS = {
    "zstd": lambda: [ZstdCodec(level=1, checksum=True)],
    "blosc": lambda: [BloscCodec(cname="lz4")],
    "gzip": lambda: [GzipCodec(level=1)],
    "none": lambda: [],
}
V2_COMPRESSORS = {
    "blosc": lambda: numcodecs.Blosc(cname="zstd"),
    "zstd": lambda: numcodecs.Zstd(),
    "zlib": lambda: numcodecs.Zlib(),
    "none": lambda: None,
}


def _array(values, chunk_rows, *, fmt, compressor, fill=0, written=None):
    """``values`` in an in-memory Zarr array in row chunks; only rows ``written`` (all
    by default) are written, the chunks never written read as ``fill``."""
    options = {"zarr_format": fmt, "fill_value": fill}
    if fmt == 3:
        options |= {"serializer": BytesCodec(), "compressors": V3_COMPRESSORS[compressor]()}
    else:
        options |= {"compressors": V2_COMPRESSORS[compressor]()}
    chunks = (chunk_rows, *values.shape[1:])
    arr = zarr.create_array(MemoryStore(), shape=values.shape, chunks=chunks, dtype=values.dtype,
                            **options)  # fmt: skip
    rows = slice(None) if written is None else written
    arr[rows] = values[rows]
    return arr


@st.composite
def layouts(draw):
    n = draw(st.integers(1, 60))
    d = draw(st.integers(1, 4))
    chunk = draw(st.integers(1, 25))
    dtype = draw(st.sampled_from(["f4", "f8", "i4", "u1"]))
    fmt = draw(st.sampled_from([2, 3]))
    compressor = draw(st.sampled_from(sorted(V3_COMPRESSORS if fmt == 3 else V2_COMPRESSORS)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = (rng.normal(size=(n, d)) * 50).astype(dtype)
    stop = draw(st.integers(0, n))  # rows past it are never written: whole chunks read as fill
    fill = draw(st.sampled_from([7, 0] + ([None] if fmt == 2 else [])))  # None: v2's "unset"
    return values, chunk, fmt, compressor, stop, fill


@given(layouts(), st.booleans())
def test_every_block_decoded_in_place_equals_zarrs_read(layout, kept):
    values, chunk, fmt, compressor, stop, fill = layout
    arr = _array(values, chunk, fmt=fmt, compressor=compressor, fill=fill, written=slice(0, stop))
    decode = chunk_read.decoder(arr)
    assert decode is not None  # these layouts take the direct path
    reader = S.ChunkReader(arr, kept=kept)
    expected = arr[:]
    for start in range(0, values.shape[0], chunk):
        key = (slice(start, min(start + chunk, values.shape[0])), slice(0, values.shape[1]))
        direct = chunk_read.whole_chunk(arr, key, decode)
        np.testing.assert_array_equal(direct, expected[key])
        block = reader[key]
        np.testing.assert_array_equal(block, expected[key])
        assert block.dtype == arr.dtype and block.shape == expected[key].shape
        assert block.flags.c_contiguous


@pytest.mark.parametrize("dtype", ["f4", "i4"])
@pytest.mark.parametrize(("fmt", "fill"), [(3, 7), (3, 0), (2, 7), (2, None)])
def test_chunks_never_written_read_as_zarr_reads_them(fmt, fill, dtype):
    values = np.arange(40, dtype=dtype).reshape(20, 2)
    arr = _array(values, 5, fmt=fmt, compressor="zstd", fill=fill, written=slice(0, 7))
    expected = arr[:]  # v2's unset fill value (None) reads as zero
    for kept in (False, True):
        reader = S.ChunkReader(arr, kept=kept)
        for start in range(0, 20, 5):
            key = (slice(start, start + 5), slice(0, 2))
            np.testing.assert_array_equal(reader[key], expected[key])


def _root(x):
    while getattr(x, "base", None) is not None:
        x = x.base
    return x


def test_kept_blocks_are_decoded_into_kept_memory_and_streamed_ones_into_numpys():
    values = np.random.default_rng(0).normal(size=(3000, 3)).astype(np.float32)
    arr = _array(values, 1024, fmt=3, compressor="zstd")
    X = S.dask_array(arr)
    kept = S.kept_reads(X)
    assert kept is not None and kept.name.startswith("dkmeans-keep-from-zarr-")
    assert S.kept_reads(X[:100]) is None  # derived from the store's read: no longer its read
    assert S.kept_reads(kept) is None
    held = X.persist()  # the same name, but the blocks are in memory: kept as they are
    assert held.name == X.name and S.kept_reads(held) is None
    arr[:] = values + 1  # the store changes after the persist
    np.testing.assert_array_equal(PL.keep_in_memory(held, None).compute(), values)
    arr[:] = values
    np.testing.assert_array_equal(kept.compute(), values)
    persisted = PL.keep_in_memory(X, None)
    assert persisted.name == kept.name  # the store's chunks were decoded into kept memory
    np.testing.assert_array_equal(persisted.compute(), values)


def test_large_kept_blocks_live_in_their_own_mapping(monkeypatch):
    from dkmeans._engine import backend as B

    monkeypatch.setattr(B, "_NUMPY_HUGEPAGE_BYTES", 1024)  # small blocks count as large
    values = np.random.default_rng(1).normal(size=(700, 4)).astype(np.float64)
    arr = _array(values, 300, fmt=3, compressor="zstd")
    key = (slice(0, 300), slice(0, 4))
    kept = S.ChunkReader(arr, kept=True)[key]
    streamed = S.ChunkReader(arr)[key]
    assert isinstance(_root(kept), mmap.mmap | memoryview)
    assert isinstance(_root(streamed), np.ndarray) and streamed.flags.owndata
    np.testing.assert_array_equal(kept, values[:300])
    np.testing.assert_array_equal(streamed, values[:300])


def _sharded(values):
    arr = zarr.create_array(MemoryStore(), shape=values.shape, chunks=(10, 3), shards=(20, 3),
                            dtype=values.dtype)  # fmt: skip
    arr[:] = values
    return arr


def _big_endian(values):
    arr = zarr.create_array(MemoryStore(), shape=values.shape, chunks=(10, 3),
                            dtype=values.dtype.newbyteorder(">"))  # fmt: skip
    arr[:] = values
    return arr


def _stored_big_endian(values):
    arr = zarr.create_array(MemoryStore(), shape=values.shape, chunks=(10, 3), dtype=values.dtype,
                            serializer=BytesCodec(endian="big"))  # fmt: skip
    arr[:] = values
    return arr


def _transposed(values):
    arr = zarr.create_array(MemoryStore(), shape=values.shape, chunks=(10, 3), dtype=values.dtype,
                            filters=[TransposeCodec(order=(1, 0))])  # fmt: skip
    arr[:] = values
    return arr


def _v2_filtered(values):
    delta = numcodecs.Delta(dtype=values.dtype)
    arr = zarr.create_array(MemoryStore(), shape=values.shape, chunks=(10, 3), dtype=values.dtype,
                            zarr_format=2, filters=[delta])  # fmt: skip
    arr[:] = values
    return arr


def _v2_fortran(values):
    arr = zarr.create_array(MemoryStore(), shape=values.shape, chunks=(10, 3), dtype=values.dtype,
                            zarr_format=2, order="F")  # fmt: skip
    arr[:] = values
    return arr


@pytest.mark.parametrize(
    "make", [_sharded, _big_endian, _stored_big_endian, _transposed, _v2_filtered, _v2_fortran]
)
def test_layouts_that_need_zarrs_pipeline_are_read_by_zarr(make):
    values = np.random.default_rng(2).normal(size=(45, 3)).astype(np.float32)
    arr = make(values)
    assert chunk_read.decoder(arr) is None
    X = S.dask_array(arr)
    np.testing.assert_array_equal(X.compute(), arr[:])
    np.testing.assert_array_equal(PL.keep_in_memory(X, None).compute(), arr[:])


def test_a_selection_that_is_not_one_whole_chunk_is_read_by_zarr():
    values = np.arange(60, dtype=np.float32).reshape(20, 3)
    arr = _array(values, 8, fmt=3, compressor="zstd")
    keys = [(slice(0, 4), slice(0, 3)), (slice(8, 16), slice(1, 3)), (slice(2, 10), slice(0, 3)),
            (slice(0, 16, 2), slice(0, 3)), (slice(0, 8),)]  # fmt: skip
    for key in keys:
        assert chunk_read.whole_chunk(arr, key, chunk_read.decoder(arr)) is None
        np.testing.assert_array_equal(S.ChunkReader(arr)[key], values[key])


def test_a_fit_from_a_default_store_never_goes_through_zarrs_read(zarr_blobs, monkeypatch):
    from dkmeans import KMeans

    path, _, _ = zarr_blobs
    with monkeypatch.context() as m:  # the reference: every chunk read by zarr
        m.setattr(chunk_read, "decoder", lambda arr: None)
        expected = {p: KMeans(5, random_state=0, persist=p).fit(str(path)) for p in (True, False)}

    def refuse(self, key):
        raise AssertionError("zarr's read was called for a whole chunk")

    monkeypatch.setattr(zarr.Array, "__getitem__", refuse)
    for persist, ref in expected.items():
        km = KMeans(5, random_state=0, persist=persist).fit(str(path))
        np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
        np.testing.assert_array_equal(np.asarray(km.labels_), np.asarray(ref.labels_))
        assert km.inertia_ == ref.inertia_


@pytest.mark.parametrize(
    ("fmt", "compressor", "encode"),
    [(3, "zstd", numcodecs.Zstd().encode), (3, "gzip", numcodecs.GZip().encode),
     (3, "blosc", numcodecs.Blosc(cname="lz4").encode), (2, "zstd", numcodecs.Zstd().encode),
     (2, "blosc", numcodecs.Blosc().encode)],
)  # fmt: skip
def test_a_chunk_that_decodes_short_is_an_error_not_stale_memory(fmt, compressor, encode):
    from zarr.core.buffer import cpu
    from zarr.core.sync import sync

    from dkmeans.io import ChunkReadError

    values = np.arange(20, dtype=np.float32).reshape(10, 2)
    arr = _array(values, 5, fmt=fmt, compressor=compressor)
    key = (slice(0, 5), slice(0, 2))
    stale = S.ChunkReader(arr)[(slice(5, 10), slice(0, 2))]  # memory the next read may reuse
    del stale
    chunk = arr.metadata.encode_chunk_key((0, 0))
    short = bytes(encode(np.arange(6, dtype=np.float32)))  # 6 floats where the chunk holds 10
    sync(arr.store.set(chunk, cpu.Buffer.from_bytes(short)))
    assert chunk_read.whole_chunk(arr, key, chunk_read.decoder(arr)) is None
    for kept in (False, True):
        with pytest.raises(ChunkReadError, match=f"chunk {chunk} of"):
            S.ChunkReader(arr, kept=kept)[key]


def test_the_last_short_chunk_is_a_block_of_its_own_size():
    values = np.random.default_rng(3).normal(size=(23, 3)).astype(np.float32)
    arr = _array(values, 10, fmt=3, compressor="zstd")
    for kept in (False, True):
        block = S.ChunkReader(arr, kept=kept)[(slice(20, 23), slice(0, 3))]
        np.testing.assert_array_equal(block, values[20:])
        assert block.flags.owndata or memoryview(_root(block)).nbytes == block.nbytes


def test_a_zero_dimensional_array_reads_through_zarr():
    arr = zarr.create_array(MemoryStore(), shape=(), dtype="f8")
    arr[()] = 3.5
    assert chunk_read.chunk_index(arr, ()) is None
    assert float(S.dask_array(arr).compute()) == 3.5
