"""Where text comes from: hub names, local files, and the offline copies in the data folder.

A data set name resolves, per split, to a [`TextSource`][hypros_lm.data.sources.TextSource]:

1. an existing local path (a file, or a folder holding ``<split>.{txt,jsonl,parquet}[.gz]``);
2. a known hub name whose real copy lies in the data folder (``$HYPROS_DATA_DIR``, else
   ``../shared/data`` when present) — used in preference to the network, and said so;
3. otherwise the hub, through ``datasets`` (streaming for the large ones) — unless offline, where a
   missing split is an error naming what is there. Offline means ``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE``
   is set, or a data folder exists and ``HYPROS_ONLINE=1`` is not set (a machine with offline copies is
   taken to be offline: a closed network makes ``datasets`` wait, not fail).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypros_lm.data.holdout import Holdout, part_of
from hypros_lm.errors import InvalidValue, MissingFile, MissingPackage

DATA_DIR_ENV = "HYPROS_DATA_DIR"


@dataclass(frozen=True)
class HubDataset:
    path: str
    config: str | None
    local: dict[str, str] = field(default_factory=dict)
    """split → file under the data folder (``.gz`` also accepted)."""
    layout: str = "wikitext"
    streaming: bool = False
    note: str = ""
    prepare_first: bool = False
    """Too large to tokenize inside a training job (its train split): launch/prepare_data.py first."""


_WIKI2 = {"train": "wikitext-2/wiki.train.tokens", "validation": "wikitext-2/wiki.valid.tokens",
          "test": "wikitext-2/wiki.test.tokens"}
_WIKI_RAW = {"validation": "wikitext-2-raw/wiki.valid.raw", "test": "wikitext-2-raw/wiki.test.raw"}

KNOWN_DATASETS: dict[str, HubDataset] = {
    "wikitext-2-v1": HubDataset("Salesforce/wikitext", "wikitext-2-v1", _WIKI2),
    "wikitext-2-raw-v1": HubDataset("Salesforce/wikitext", "wikitext-2-raw-v1", _WIKI_RAW),
    "wikitext-103-raw-v1": HubDataset(
        "Salesforce/wikitext", "wikitext-103-raw-v1", _WIKI_RAW, prepare_first=True,
        note="WikiText-103 raw validation/test are the same articles as WikiText-2 raw",
    ),
    "wikitext-103-v1": HubDataset("Salesforce/wikitext", "wikitext-103-v1", prepare_first=True),
    "pile": HubDataset("monology/pile-uncopyrighted", None, layout="records", streaming=True, prepare_first=True),
    # evaluation-only text for domain shift (fiction, film reviews)
    "lambada": HubDataset("EleutherAI/lambada_openai", "default", {"test": "lambada/lambada_test.jsonl"}, layout="records"),
    "imdb": HubDataset("stanfordnlp/imdb", None, {"test": "imdb/test.jsonl.gz"}, layout="records"),
}
_SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}


def canonical_split(split: str) -> str:
    """``valid``, ``val`` and ``dev`` name the ``validation`` split."""
    return _SPLIT_ALIASES.get(split, split)


@dataclass(frozen=True)
class TextSource:
    """One split of one data set, resolved."""

    name: str
    split: str
    layout: str  # "wikitext" (lines, articles at ' = Title = '), "lines", or "records"
    path: Path | None = None  # local file; None means the hub
    hub: HubDataset | None = None
    text_field: str = "text"
    holdout: Holdout | None = None
    """Set when this split is held out of (or is what remains of) the source's ``holdout.source_split``."""

    def describe(self) -> str:
        split = self.split if self.holdout is None else f"{self.split}: {self.holdout.describe(self.split)}"
        if self.path is not None:
            return f"{self.name} [{split}] from local file {self.path}"
        assert self.hub is not None
        return f"{self.name} [{split}] from the hub ({self.hub.path}, {self.hub.config}, streaming={self.hub.streaming})"

    def identity(self) -> dict:
        """What determines the text (for cache keys)."""
        if self.path is not None:
            st = self.path.stat()
            ident = {"path": str(self.path.resolve()), "size": st.st_size, "mtime": int(st.st_mtime), "split": self.split}
        else:
            ident = {"hub": self.hub.path, "config": self.hub.config, "split": self.split, "field": self.text_field}
        return ident | ({"holdout": self.holdout.identity()} if self.holdout else {})

    def without_holdout(self) -> TextSource:
        """The whole split the held-out parts come from."""
        return replace(self, split=self.holdout.source_split, holdout=None) if self.holdout else self


def offline() -> bool:
    return any(os.environ.get(v, "0").lower() in ("1", "true", "yes") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def use_offline_copies() -> bool:
    """The hub is not to be asked: offline is set, or a data folder exists and HYPROS_ONLINE=1 is not set."""
    return offline() or (data_dir() is not None and os.environ.get("HYPROS_ONLINE") != "1")


def data_dir() -> Path | None:
    """The folder of offline copies: $HYPROS_DATA_DIR, else ../shared/data beside the checkout or the cwd."""
    if os.environ.get(DATA_DIR_ENV):
        path = Path(os.environ[DATA_DIR_ENV])
        if not path.is_dir():
            raise MissingFile(f"{DATA_DIR_ENV}={path} is not a folder; point it at the offline data copies")
        return path
    here = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), here):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def _existing(path: Path) -> Path | None:
    for p in (path, path.with_name(path.name + ".gz")):
        if p.is_file():
            return p
    return None


def _layout_of(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".jsonl", ".json", ".parquet"):
        return "records"
    if ext in (".tokens", ".raw"):
        return "wikitext"
    return "lines"


def _local_split(folder: Path, split: str) -> Path | None:
    names = {split, _SPLIT_ALIASES.get(split, split)} | {k for k, v in _SPLIT_ALIASES.items() if v == split}
    for name in sorted(names):
        for ext in (".txt", ".jsonl", ".parquet", ".tokens", ".raw"):
            found = _existing(folder / f"{name}{ext}")
            if found:
                return found
    return None


def resolve_source(name: str, split: str, *, text_field: str = "text") -> TextSource:
    """Resolve a data set name and split; raise with what exists when the split cannot be had."""
    split = canonical_split(split)
    as_path = Path(name).expanduser()
    if as_path.exists():
        file = as_path if as_path.is_file() else _local_split(as_path, split)
        if file is None:
            present = sorted(p.name for p in as_path.iterdir())
            raise MissingFile(
                f"no {split!r} split in local data folder {as_path}; it holds {present}. "
                f"Name files <split>.txt/.jsonl/.parquet (optionally .gz)"
            )
        return TextSource(name, split, _layout_of(file), path=file, text_field=text_field)
    if name in KNOWN_DATASETS:
        spec = KNOWN_DATASETS[name]
        folder = data_dir()
        if folder is not None and split in spec.local:
            file = _existing(folder / spec.local[split])
            if file is not None:
                return TextSource(name, split, spec.layout, path=file, text_field=text_field)
        if use_offline_copies():
            if folder is None:
                raise MissingFile(
                    f"data set {name!r} [{split}]: offline, and no data folder with offline copies was found; "
                    f"set {DATA_DIR_ENV} to it (or place the copies in ../shared/data), or go online"
                )
            have = sorted(s for s in spec.local if _existing(folder / spec.local[s]))
            raise MissingFile(
                f"data set {name!r} has no {split!r} split offline (data folder: {folder}); "
                f"offline it has {have or 'no splits'}. Use data.name=wikitext-2-v1 for a whole offline "
                f"corpus, choose an available split, or go online (unset HF_DATASETS_OFFLINE/HF_HUB_OFFLINE)"
            )
        return TextSource(name, split, spec.layout, hub=spec, text_field=text_field)
    if offline():
        raise MissingFile(
            f"unknown data set {name!r}: not a local path, not one of {sorted(KNOWN_DATASETS)}, "
            f"and the hub is off (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE)"
        )
    return TextSource(name, split, "records", hub=HubDataset(name, None, layout="records", streaming=True),
                      text_field=text_field)


_HEADING = re.compile(r"^ = [^=].* = $")


def _wikitext_articles(lines: Iterator[str]) -> Iterator[str]:
    """Group WikiText lines into articles (a top-level heading ' = Title = ' starts one)."""
    buf: list[str] = []
    for line in lines:
        line = line.rstrip("\n")
        if _HEADING.match(line) and buf:
            yield "\n".join(buf).strip()
            buf = []
        if line.strip():
            buf.append(line.strip())
    if buf:
        yield "\n".join(buf).strip()


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _local_records(path: Path, text_field: str) -> Iterator[str]:
    if ".parquet" in path.suffixes:
        import pyarrow.parquet as pq

        yield from (t for t in pq.read_table(path, columns=[text_field]).column(text_field).to_pylist() if t)
        return
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                record = json.loads(line)
                if text_field not in record:
                    raise InvalidValue(f"{path}:{n} has no field {text_field!r} (fields: {sorted(record)}); set data.text_field")
                yield record[text_field]


def iter_documents(source: TextSource) -> Iterator[str]:
    """Documents of a split, in order (of a held-out split: its part of the source split, in order)."""
    if source.holdout is None:
        yield from _iter_split(source)
        return
    base = source.without_holdout()
    part = part_of(source.holdout, lambda: _iter_split(base), key=json.dumps(base.identity(), sort_keys=True),
                   countable=base.path is not None)
    yield from (doc for doc in _iter_split(base) if part(doc) == source.split)


def _iter_split(source: TextSource) -> Iterator[str]:
    if source.path is not None:
        if source.layout == "records":
            yield from _local_records(source.path, source.text_field)
            return
        with _open_text(source.path) as f:
            if source.layout == "wikitext":
                yield from _wikitext_articles(f)
            else:
                yield from (line.strip() for line in f if line.strip())
        return
    datasets = _datasets(source.name)
    hub = source.hub
    ds = datasets.load_dataset(hub.path, hub.config, split=source.split, streaming=hub.streaming)
    rows = (row[source.text_field] for row in ds)
    if source.layout == "wikitext":
        yield from _wikitext_articles(rows)
    else:
        yield from (t for t in rows if t)


def _datasets(name: str):
    """The datasets package, which reads a data set from the hub (the loss API and ``[hf]`` install it not)."""
    try:
        import datasets
    except ImportError:
        raise MissingPackage(f"reading {name!r} from the Hugging Face hub needs the datasets package: pip install "
                             f"datasets (or install hypros-lm[train]), or set {DATA_DIR_ENV} to a folder of offline "
                             f"copies (../shared/data in a checkout)") from None
    return datasets


def resolve_splits(name: str, splits: dict[str, str], *, text_field: str = "text",
                   holdout: Holdout | None = None) -> dict[str, TextSource]:
    """Resolve several splits of a data set (role → split name). An evaluation split the source does not
    have (a local file, a folder without that file) is held out of its training split, as ``holdout`` says;
    the training split then keeps the rest. Nothing is read here."""
    train_role = next((r for r, s in splits.items() if canonical_split(s) == "train"), None)
    resolved: dict[str, TextSource] = {}
    held: list[str] = []
    for role, split in splits.items():
        if role != train_role and train_role is not None and _lacks_split(name, split):
            held.append(role)
            continue
        resolved[role] = resolve_source(name, split, text_field=text_field)
    if not held:
        return resolved
    spec = replace(holdout or Holdout(), parts=tuple(canonical_split(splits[r]) for r in held),
                   source_split=canonical_split(splits[train_role]))
    base = resolved[train_role]
    resolved[train_role] = replace(base, holdout=spec)
    for role in held:
        resolved[role] = replace(base, split=canonical_split(splits[role]), holdout=spec)
    return resolved


def _lacks_split(name: str, split: str) -> bool:
    """A local file (one text, no splits), or a local folder without a file for this split."""
    path = Path(name).expanduser()
    if path.is_file():
        return True
    if path.is_dir():
        return _local_split(path, canonical_split(split)) is None
    if name in KNOWN_DATASETS or use_offline_copies():
        return False
    try:  # a hub set: ask for its split names (online only)
        import datasets

        return canonical_split(split) not in {canonical_split(s) for s in datasets.get_dataset_split_names(name)}
    except Exception:  # noqa: BLE001 - unknown: resolve the split as named, which then says what is wrong
        return False
