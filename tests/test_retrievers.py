import numpy as np
import pytest

from core.lexical import tokenize
from core.tools import Tool, ToolCatalog
from eval.retrievers import BM25Retriever, EmbeddingRetriever, Retriever, _top_k, finetune_embedding

TOOLS = [
    ("WeatherAPI", "current_weather", "Get the current weather, temperature and rain forecast for a city."),
    ("CurrencyHub", "convert_currency", "Convert an amount of money between currencies using exchange rates."),
    ("Translator", "translate_text", "Translate text from one language into another language."),
    ("StockTicker", "stock_quote", "Get the latest stock market share price for a company ticker symbol."),
    ("MailSender", "send_email", "Send an email message to a recipient address with subject and body."),
    ("FlightFinder", "search_flights", "Search airline flights between two airports on a travel date."),
]
QUERIES = {
    "Will it rain in Paris today? What's the temperature?": "WeatherAPI&&current_weather",
    "How many euros is 100 US dollars at today's exchange rate?": "CurrencyHub&&convert_currency",
    "Translate 'good morning' into Japanese": "Translator&&translate_text",
    "What is Apple's share price on the stock market?": "StockTicker&&stock_quote",
    "Send an email to my boss about the meeting": "MailSender&&send_email",
    "Find me a flight from Boston to Denver next Friday": "FlightFinder&&search_flights",
}


@pytest.fixture(scope="module")
def catalog():
    return ToolCatalog(Tool(f"{t}&&{a}", "Test", t, a, d, source="test") for t, a, d in TOOLS)


@pytest.fixture(scope="module")
def bm25(catalog):
    return BM25Retriever(catalog)


@pytest.fixture(scope="module")
def embedding(catalog, tmp_path_factory):
    return EmbeddingRetriever(catalog, cache_dir=tmp_path_factory.mktemp("emb-cache"))


def test_tokenize_splits_identifiers_drops_stop_words_and_stems():
    assert tokenize("getWeatherData for Paris&&current_weather v2.1") == [
        "weather",
        "data",
        "pari",
        "current",
        "weather",
        "v2",
        "1",
    ]  # "get", "for": stop words
    assert tokenize("getHTTPStatus of the running queries") == ["http", "status", "run", "queri"]


def test_top_k_matches_full_sort_with_catalog_order_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=200).astype(np.float32)  # many ties
    candidates = np.unique(rng.integers(0, 200, size=80))
    for k in (1, 3, 10, 500):
        expected = sorted(candidates, key=lambda i: (-scores[i], i))[:k]
        assert _top_k(scores, candidates, k).tolist() == expected
        assert _top_k(scores, None, k).tolist() == sorted(range(200), key=lambda i: (-scores[i], i))[:k]
    with pytest.raises(ValueError, match="k must be"):
        _top_k(scores, None, 0)


@pytest.mark.parametrize("name", ["bm25", "embedding"])
def test_obvious_queries_rank_their_tool_first(name, request):
    retriever: Retriever = request.getfixturevalue(name)
    for query, gold in QUERIES.items():
        ranked = retriever.retrieve(query, k=3)
        assert len(ranked) == 3 and ranked[0][0] == gold, (query, ranked)
        scores = [s for _, s in ranked]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("name", ["bm25", "embedding"])
def test_pool_restricts_and_batch_matches_single(name, request):
    retriever = request.getfixturevalue(name)
    pool = ["Translator&&translate_text", "MailSender&&send_email", "StockTicker&&stock_quote"]
    ranked = retriever.retrieve("Send an email to my boss", k=5, pool=pool)
    assert [t for t, _ in ranked][0] == "MailSender&&send_email"
    assert sorted(t for t, _ in ranked) == sorted(pool)  # k larger than the pool: the whole pool
    queries = list(QUERIES)
    batch = retriever.retrieve_batch(queries, k=2, pool=pool)
    for query, result in zip(queries, batch):
        single = retriever.retrieve(query, k=2, pool=pool)
        assert [t for t, _ in result] == [t for t, _ in single]
        assert np.allclose([s for _, s in result], [s for _, s in single], atol=1e-5)
    assert retriever.retrieve_batch([], k=2) == []
    with pytest.raises(ValueError, match="not in the catalog"):
        retriever.retrieve("x", pool=["Nope&&nothing"])


def test_bm25_unknown_words_fall_back_to_catalog_order(bm25, catalog):
    assert bm25.retrieve("zzz qqq", k=2) == [(catalog.ids[0], 0.0), (catalog.ids[1], 0.0)]
    assert bm25.retrieve("", k=1) == [(catalog.ids[0], 0.0)]


def test_embedding_cache_is_reused(catalog, embedding, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    EmbeddingRetriever(catalog, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 1

    def no_encoding(*args, **kwargs):
        raise AssertionError("corpus encoded again despite the cache")

    with monkeypatch.context() as patch:
        patch.setattr(EmbeddingRetriever, "_encode", no_encoding)
        again = EmbeddingRetriever(catalog, cache_dir=cache)
    assert np.allclose(again.embeddings, embedding.embeddings, atol=1e-6)
    assert np.allclose(np.linalg.norm(again.embeddings, axis=1), 1.0, atol=1e-5)
    EmbeddingRetriever(ToolCatalog(list(catalog)[:3]), cache_dir=cache)  # other documents: another file
    assert len(list(cache.glob("*.npy"))) == 2


@pytest.mark.slow
def test_finetune_then_retrieve(catalog, embedding, tmp_path):
    pairs = [(query, catalog[gold].document()) for query, gold in QUERIES.items()]
    out = finetune_embedding(pairs, tmp_path / "toolretriever", epochs=1, batch_size=3)
    assert (out / "modules.json").exists() and (out / "model.safetensors").exists()
    tuned = EmbeddingRetriever(catalog, model_path=out, cache_dir=tmp_path / "cache")
    assert tuned.name == "embedding:toolretriever"
    assert not np.allclose(tuned.embeddings, embedding.embeddings, atol=1e-4)  # training changed the weights
    for query, gold in QUERIES.items():
        assert tuned.retrieve(query, k=1)[0][0] == gold
    with pytest.raises(ValueError, match="training pair 1"):
        finetune_embedding([("q", "d"), ("q", "")], tmp_path / "bad")


def test_embedding_baseline_indexes_each_corpus_in_its_chosen_text(catalog, tmp_path, monkeypatch):
    from core.lexical import bm25_document
    from eval.retrievers import baseline_retriever, embedding_document

    assert embedding_document("toolbench") is bm25_document and embedding_document("bfcl") is Tool.document
    assert embedding_document("toolbench", fine_tuned=True) is Tool.document  # training queries cannot choose it
    embedded = []
    monkeypatch.setattr(EmbeddingRetriever, "_corpus_embeddings", lambda self, docs, cache: embedded.append(docs))
    baseline_retriever("embedding", catalog, "toolbench", cache_dir=None)
    baseline_retriever("embedding", catalog, "bfcl", cache_dir=None)
    assert embedded == [[bm25_document(t) for t in catalog], [t.document() for t in catalog]]
