"""Data: source resolution (hub, local, offline copies), tokenizers, packed and cached token blocks."""

from hypros_lm.data.packing import BlockOrder, TokenBlocks, cache_root, tokenize_to_cache
from hypros_lm.data.pipeline import DataSettings, PreparedData, prepare_data, resolve_sources
from hypros_lm.data.sources import KNOWN_DATASETS, TextSource, data_dir, iter_documents, resolve_source
from hypros_lm.data.tokenizer import EOS, eos_id, load_tokenizer, save_tokenizer, train_bpe

__all__ = [
    "EOS", "KNOWN_DATASETS", "BlockOrder", "DataSettings", "PreparedData", "TextSource", "TokenBlocks",
    "cache_root", "data_dir", "eos_id", "iter_documents", "load_tokenizer", "prepare_data", "resolve_source",
    "resolve_sources", "save_tokenizer", "tokenize_to_cache", "train_bpe",
]
