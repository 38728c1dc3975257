"""Data: source resolution (hub, local, offline copies), tokenizers, corpus preparation into token shards,
and memory-mapped token blocks."""

from hypros_lm.data.packing import BlockOrder, cache_root
from hypros_lm.data.pipeline import PreparedData, prepare_data, resolve_sources
from hypros_lm.data.prepare import prepare_corpus
from hypros_lm.data.settings import DataSettings
from hypros_lm.data.shards import PreparedCorpus, TokenBlocks, is_prepared
from hypros_lm.data.sources import KNOWN_DATASETS, TextSource, data_dir, iter_documents, resolve_source
from hypros_lm.data.tokenizer import EOS, eos_id, load_tokenizer, save_tokenizer, train_bpe

__all__ = [
    "EOS", "KNOWN_DATASETS", "BlockOrder", "DataSettings", "PreparedCorpus", "PreparedData",
    "TextSource", "TokenBlocks", "cache_root", "data_dir", "eos_id", "is_prepared", "iter_documents", "load_tokenizer",
    "prepare_corpus", "prepare_data", "resolve_source", "resolve_sources", "save_tokenizer", "train_bpe",
]
