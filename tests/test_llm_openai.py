"""The `openai` backend against a real HTTP server speaking the OpenAI wire format (tests/openai_server.py):
the real `openai` client, its retries and timeouts, and the real retrieval pipeline over the seed article."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from openai_server import (
    DEFAULT_TEXT,
    FakeOpenAIServer,
    Raw,
    Reply,
    Stall,
    Status,
    openai_server,
    rate_limited,
)

import rag.pipeline.store
from rag import RAG, Settings
from rag.backends import make_generator
from rag.backends.openai_chat import OpenAIChat
from rag.cli import main, run
from rag.errors import ConfigError, LLMError
from rag.prompts import REFUSAL
from rag.store.embedding import Embedder
from rag.types import Answer, Capabilities, Completion, GenerationRequest

__all__ = ["openai_server"]  # the fixture is used by name

SEEDS = Path(__file__).resolve().parent.parent / "seeds"

QUESTION = "Who is the Secretary General of the CSTO?"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


def request(max_tokens: int = 64, temperature: float = 0.0) -> GenerationRequest:
    return GenerationRequest("Say hello.", [], MESSAGES, max_tokens, temperature)


def chat(
    server: FakeOpenAIServer, *, model: str = "test-model", timeout: float = 5.0, max_retries: int = 0
) -> OpenAIChat:
    return OpenAIChat(model, base_url=server.base_url, api_key="sk-test", timeout=timeout, max_retries=max_retries)


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def seeded_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """The seed article indexed once for this module: answering only reads the index, and indexing per
    test (what the `seeded` fixture does) would dominate this file's run time."""
    index_dir = tmp_path_factory.mktemp("openai") / "index"
    with pytest.MonkeyPatch.context() as mp:
        for var in [v for v in os.environ if v.startswith("RAG_")]:
            mp.delenv(var)
        mp.chdir(index_dir.parent)
        pipeline = RAG(Settings(index_dir=index_dir, progress=False, backend="extractive"), embedder=embedder)
        pipeline.index([SEEDS])
    return index_dir


@pytest.fixture
def seeded(seeded_index: Path, embedder: Embedder) -> RAG:
    """Same as conftest's `seeded`, over the module's shared index."""
    pipeline = RAG(Settings(index_dir=seeded_index, progress=False, backend="extractive"), embedder=embedder)
    return pipeline


def openai_rag(seeded: RAG, server: FakeOpenAIServer, **overrides: object) -> RAG:
    """A RAG over the seeded index (sharing its loaded embedding model) whose generator is the fake server."""
    options: dict[str, object] = {
        "index_dir": seeded.settings.index_dir,
        "progress": False,
        "backend": "openai",
        "openai_base_url": server.base_url,
        "openai_api_key": "sk-test",
        "openai_timeout": 5.0,
        "openai_max_retries": 0,
        "min_confidence": 0.0,  # the text and its citations are under test here, the confidence in test_reader
        **overrides,
    }
    pipeline = RAG(Settings(**options), embedder=seeded.embedder)  # type: ignore[arg-type]
    return pipeline


def zas_passage(pipeline: RAG) -> int:
    """The number `[n]` the prompt gives the passage naming the Secretary General (retrieval decides it)."""
    passages = pipeline.retrieve(QUESTION)
    return next(n for n, p in enumerate(passages, start=1) if "Secretary General Stanislav Zas" in p.text)


class TestFakeServer:
    """The fixture itself must speak the real format, or every test below proves nothing."""

    def test_non_streaming_completion_parses_with_the_openai_client(self, openai_server: FakeOpenAIServer) -> None:
        import openai

        client = openai.OpenAI(api_key="sk-test", base_url=openai_server.base_url, max_retries=0, timeout=5)
        openai_server.script(Reply("Hello there."))
        completion = client.chat.completions.create(model="m1", messages=MESSAGES)  # type: ignore[arg-type]
        assert completion.object == "chat.completion"
        assert completion.model == "m1"
        assert completion.choices[0].message.content == "Hello there."
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage is not None and completion.usage.completion_tokens == 2

    def test_stream_is_sse_chunks_then_done(self, openai_server: FakeOpenAIServer) -> None:
        import httpx2

        body = {"model": "m1", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
        openai_server.script(Reply(pieces=["a", "b"]))
        response = httpx2.post(openai_server.base_url + "/chat/completions", json=body, timeout=5)
        assert response.headers["content-type"].startswith("text/event-stream")
        events = response.text.split("\n\n")
        assert events[-2:] == ["data: [DONE]", ""]
        chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["a", "b"]
        assert chunks[3]["choices"][0]["finish_reason"] == "stop"
        assert chunks[4]["choices"] == [] and chunks[4]["usage"]["completion_tokens"] == 1

    def test_models_endpoint_and_unknown_paths(self, openai_server: FakeOpenAIServer) -> None:
        import openai

        client = openai.OpenAI(api_key="sk-test", base_url=openai_server.base_url, max_retries=0, timeout=5)
        assert [m.id for m in client.models.list().data] == ["gpt-4o-mini", "test-model"]
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="m1", input="x")
        assert [(r.method, r.path) for r in openai_server.requests] == [
            ("GET", "/v1/models"),
            ("POST", "/v1/embeddings"),
        ]

    def test_queue_is_consumed_in_order_then_default(self, openai_server: FakeOpenAIServer) -> None:
        generator = chat(openai_server)
        openai_server.script(Reply("one"), Reply("two"))
        assert ["".join(generator.stream(request())) for _ in range(3)] == ["one", "two", DEFAULT_TEXT]
        assert openai_server.pending == 0


class TestOpenAIChat:
    def test_normal_reply_and_what_is_sent(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Reply("Hello, world."))
        pieces = list(chat(openai_server).stream(request(max_tokens=33, temperature=0.25)))
        assert "".join(pieces) == "Hello, world."
        [sent] = openai_server.completions
        assert sent.body is not None
        assert sent.body["model"] == "test-model"
        assert sent.body["messages"] == MESSAGES
        assert sent.body["stream"] is True
        assert sent.body["max_tokens"] == 33
        assert sent.body["temperature"] == 0.25
        assert sent.headers["authorization"] == "Bearer sk-test"

    def test_complete_joins_the_stream_without_logprobs(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Reply("Hello, world."))
        generator = chat(openai_server)
        assert generator.complete(request()) == Completion("Hello, world.", None)
        assert generator.capabilities == Capabilities(llm=True, logprobs=False, rewrites_follow_ups=True)

    def test_stop_strings_are_sent_only_when_given(self, openai_server: FakeOpenAIServer) -> None:
        chat(openai_server).complete(GenerationRequest("Say hello.", [], MESSAGES, 8, 0.0, stop=("\n\n",)))
        chat(openai_server).complete(request())
        first, second = (sent.body for sent in openai_server.completions)
        assert first is not None and second is not None
        assert first["stop"] == ["\n\n"] and "stop" not in second

    def test_stream_pieces_arrive_in_order_and_incrementally(self, openai_server: FakeOpenAIServer) -> None:
        """The first piece must reach the caller while the server is still generating, not after it."""
        openai_server.script(Reply(pieces=["Zas ", "leads ", "the ", "CSTO."], stall_after=2, stall=0.4))
        seen: list[tuple[str, float]] = []
        start = time.monotonic()
        for piece in chat(openai_server).stream(request()):
            seen.append((piece, time.monotonic() - start))
        assert [p for p, _ in seen] == ["Zas ", "leads ", "the ", "CSTO."]
        assert seen[1][1] < 0.35 <= seen[2][1]

    def test_empty_deltas_are_not_yielded(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Reply(pieces=["", "a", "", "b"]))
        assert list(chat(openai_server).stream(request())) == ["a", "b"]

    def test_base_url_without_api_key_is_allowed(self, openai_server: FakeOpenAIServer) -> None:
        """Local OpenAI-compatible servers need no key; a placeholder is sent."""
        generator = OpenAIChat("test-model", base_url=openai_server.base_url, api_key=None, max_retries=0)
        assert "".join(generator.stream(request())) == DEFAULT_TEXT
        assert openai_server.completions[0].headers["authorization"].startswith("Bearer ")

    def test_missing_api_key_and_base_url_is_config_error(self) -> None:
        with pytest.raises(ConfigError, match="API key") as info:
            OpenAIChat("gpt-4o-mini", base_url=None, api_key=None)
        assert info.value.hint is not None and "OPENAI_API_KEY" in info.value.hint

    def test_429_is_retried_then_llm_error(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.default = rate_limited()
        with pytest.raises(LLMError, match="429") as info:
            list(chat(openai_server, max_retries=2).stream(request()))
        assert "rate limit" in info.value.message
        assert openai_server.base_url in info.value.message
        assert len(openai_server.completions) == 3

    def test_429_once_then_success(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(rate_limited(), Reply("Recovered."))
        assert "".join(chat(openai_server, max_retries=1).stream(request())) == "Recovered."
        assert len(openai_server.completions) == 2

    def test_429_without_retries_fails_on_first_response(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.default = rate_limited()
        with pytest.raises(LLMError, match="429"):
            list(chat(openai_server, max_retries=0).stream(request()))
        assert len(openai_server.completions) == 1

    def test_500_is_llm_error_mentioning_status(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.default = Status(500, "The server had an error while processing your request.")
        with pytest.raises(LLMError, match="HTTP 500") as info:
            list(chat(openai_server).stream(request()))
        assert "The server had an error" in info.value.message
        assert len(openai_server.completions) == 1

    def test_500_once_is_retried(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Status(500), Reply("Second time lucky."))
        assert "".join(chat(openai_server, max_retries=1).stream(request())) == "Second time lucky."
        assert len(openai_server.completions) == 2

    def test_401_names_the_api_key(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Status(401, "Incorrect API key provided"))
        with pytest.raises(LLMError, match="API key") as info:
            list(chat(openai_server).stream(request()))
        assert info.value.hint == "check OPENAI_API_KEY"

    def test_404_unknown_model_hints_at_model_setting(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Status(404, "The model `nope` does not exist"))
        with pytest.raises(LLMError, match="HTTP 404") as info:
            list(chat(openai_server, model="nope").stream(request()))
        assert info.value.hint is not None and "'nope'" in info.value.hint

    def test_timeout_is_llm_error_quickly(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.default = Stall(5.0)
        start = time.monotonic()
        with pytest.raises(LLMError, match="did not answer in time"):
            list(chat(openai_server, timeout=0.5, max_retries=1).stream(request()))
        assert time.monotonic() - start < 4.0
        assert len(openai_server.completions) == 2

    def test_stall_mid_stream_is_llm_error(self, openai_server: FakeOpenAIServer) -> None:
        """Retries cannot help once text is flowing: the pieces so far arrive, then the error."""
        openai_server.script(Reply(pieces=["Zas ", "leads."], stall_after=1, stall=5.0))
        pieces: list[str] = []
        start = time.monotonic()
        with pytest.raises(LLMError, match="did not answer in time"):
            pieces.extend(chat(openai_server, timeout=0.5, max_retries=2).stream(request()))
        assert pieces == ["Zas "]
        assert time.monotonic() - start < 4.0
        assert len(openai_server.completions) == 1

    def test_unreachable_endpoint_is_llm_error_quickly(self) -> None:
        url = f"http://127.0.0.1:{closed_port()}/v1"
        generator = OpenAIChat("test-model", base_url=url, api_key="sk-test", timeout=2.0, max_retries=1)
        start = time.monotonic()
        with pytest.raises(LLMError, match="cannot reach") as info:
            list(generator.stream(request()))
        assert url in info.value.message
        assert info.value.hint is not None and "OPENAI_BASE_URL" in info.value.hint
        assert time.monotonic() - start < 5.0

    def test_error_event_mid_stream_is_llm_error(self, openai_server: FakeOpenAIServer) -> None:
        """OpenAI reports failures after the 200 as an SSE `{"error": ...}` event."""
        openai_server.script(Reply(pieces=["Zas "], error="The model is overloaded"))
        pieces: list[str] = []
        with pytest.raises(LLMError, match="The model is overloaded"):
            pieces.extend(chat(openai_server).stream(request()))
        assert pieces == ["Zas "]

    def test_malformed_stream_event_is_llm_error(self, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Raw("data: {not json\n\n", content_type="text/event-stream"))
        with pytest.raises(LLMError, match="malformed"):
            list(chat(openai_server).stream(request()))

    def test_non_stream_200_is_llm_error_not_an_empty_answer(self, openai_server: FakeOpenAIServer) -> None:
        """A base URL pointing at some web page (or a server ignoring `stream`) answers 200 without a single
        event; that must not pass for an empty answer, which the pipeline would turn into a refusal."""
        openai_server.script(Raw("<html><body>Welcome</body></html>"))
        with pytest.raises(LLMError, match="no completion stream"):
            list(chat(openai_server).stream(request()))

    def test_wrong_base_url_path_is_llm_error(self, openai_server: FakeOpenAIServer) -> None:
        generator = OpenAIChat("test-model", base_url=openai_server.url, api_key="sk-test", max_retries=0)
        with pytest.raises(LLMError, match="HTTP 404"):
            list(generator.stream(request()))


class TestOpenAISettings:
    def test_env_vars_are_honoured(
        self, openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        monkeypatch.setenv("RAG_OPENAI_MODEL", "env-model-7b")
        monkeypatch.setenv("RAG_OPENAI_MAX_RETRIES", "0")
        monkeypatch.setenv("RAG_BACKEND", "openai")
        settings = Settings(index_dir=tmp_path / "index")
        generator = make_generator(settings)
        assert isinstance(generator, OpenAIChat)
        assert "".join(generator.stream(request())) == DEFAULT_TEXT
        [sent] = openai_server.completions
        assert sent.body is not None and sent.body["model"] == "env-model-7b"
        assert sent.headers["authorization"] == "Bearer sk-from-env"

    def test_rag_prefixed_env_vars_win(
        self, openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
        monkeypatch.setenv("RAG_OPENAI_BASE_URL", openai_server.base_url)
        monkeypatch.setenv("RAG_OPENAI_API_KEY", "sk-rag")
        generator = make_generator(Settings(index_dir=tmp_path / "index"), "openai")
        assert "".join(generator.stream(request())) == DEFAULT_TEXT
        assert openai_server.completions[0].headers["authorization"] == "Bearer sk-rag"

    def test_retry_and_timeout_settings_reach_the_client(
        self, openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
        monkeypatch.setenv("RAG_OPENAI_MAX_RETRIES", "1")
        monkeypatch.setenv("RAG_OPENAI_TIMEOUT", "0.3")
        openai_server.default = Stall(5.0)
        generator = make_generator(Settings(index_dir=tmp_path / "index"), "openai")
        start = time.monotonic()
        with pytest.raises(LLMError, match="in time"):
            list(generator.stream(request()))
        assert time.monotonic() - start < 4.0
        assert len(openai_server.completions) == 2

    def test_missing_key_without_base_url_is_config_error(self, tmp_path: Path) -> None:
        settings = Settings(index_dir=tmp_path / "index", backend="openai")
        with pytest.raises(ConfigError):
            make_generator(settings)
        with pytest.raises(ConfigError):
            RAG(settings).answer(QUESTION)


class TestOpenAIBackendEndToEnd:
    def test_answer_with_citations_and_prompt_sent(self, seeded: RAG, openai_server: FakeOpenAIServer) -> None:
        pipeline = openai_rag(seeded, openai_server, openai_model="gpt-test")
        n = zas_passage(pipeline)
        openai_server.script(Reply(f"Stanislav Zas is the Secretary General of the CSTO [{n}]."))
        answer = pipeline.answer(QUESTION)
        assert answer.text == f"Stanislav Zas is the Secretary General of the CSTO [{n}]."
        assert not answer.refused
        assert answer.backend == "openai" and answer.model == "gpt-test"
        assert [c.number for c in answer.citations] == [n]
        assert "Secretary General Stanislav Zas" in answer.citations[0].quote
        assert answer.cited_passages == [answer.passages[n - 1]]
        assert answer.invalid_citations == []
        [sent] = openai_server.completions
        system, user = sent.messages
        assert system["role"] == "system" and REFUSAL in system["content"]
        assert user["role"] == "user"
        assert QUESTION in user["content"]
        for n, passage in enumerate(answer.passages, start=1):
            assert f"[{n}] " in user["content"]
            assert passage.chunk.text in user["content"]
        assert f"[{len(answer.passages) + 1}]" not in user["content"]
        assert sent.body is not None and sent.body["model"] == "gpt-test"

    def test_answer_stream_yields_pieces_then_answer(self, seeded: RAG, openai_server: FakeOpenAIServer) -> None:
        pieces = ["Stanislav ", "Zas ", "is ", "the ", "Secretary ", "General ", "[", "1", "]", "."]
        openai_server.script(Reply(pieces=pieces))
        items = list(openai_rag(seeded, openai_server).answer_stream(QUESTION, backend="openai"))
        *texts, final = items
        assert len(texts) >= 3 and all(isinstance(t, str) for t in texts)
        assert isinstance(final, Answer)
        assert "".join(texts) == final.text == "Stanislav Zas is the Secretary General [1]."
        assert [c.number for c in final.citations] == [1]
        assert final.citations[0].claim.startswith("Stanislav Zas")
        assert "first_token" in final.timings

    def test_out_of_range_citations_removed_and_reported(self, seeded: RAG, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Reply("Zas heads the CSTO [1][9]. He spoke on Thursday [12, 2][0]."))
        answer = openai_rag(seeded, openai_server).answer(QUESTION)
        assert len(answer.passages) == 5
        assert answer.text == "Zas heads the CSTO [1]. He spoke on Thursday [2]."
        assert answer.invalid_citations == [9, 12, 0]
        assert [c.number for c in answer.citations] == [1, 2]
        assert answer.citations[1].claim == "He spoke on Thursday"

    def test_invalid_citation_split_across_stream_chunks(self, seeded: RAG, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Reply(pieces=["Zas heads the CSTO [", "9]", "[1", "]."]))
        answer = openai_rag(seeded, openai_server).answer(QUESTION)
        assert answer.text == "Zas heads the CSTO [1]."
        assert answer.invalid_citations == [9]

    def test_lone_invalid_citation_leaves_no_gap(self, seeded: RAG, openai_server: FakeOpenAIServer) -> None:
        """The marker is streamed as a piece of its own after "CSTO ", so the space before it is already
        out when the marker is dropped; the final text must still read cleanly."""
        openai_server.script(Reply("Zas heads the CSTO [9]."))
        answer = openai_rag(seeded, openai_server).answer(QUESTION)
        assert answer.invalid_citations == [9]
        assert answer.text.startswith("Zas heads the CSTO")
        assert "[9]" not in answer.text
        assert " ." not in answer.text and "  " not in answer.text

    def test_refusal_sentence_is_refused_without_citations(self, seeded: RAG, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Reply(REFUSAL))
        answer = openai_rag(seeded, openai_server).answer("What did the CSTO say about Mars?")
        assert answer.refused is True
        assert answer.text.startswith(REFUSAL)
        assert answer.citations == []
        assert len(openai_server.completions) == 1

    def test_wrong_endpoint_is_an_error_not_a_refusal(self, seeded: RAG, openai_server: FakeOpenAIServer) -> None:
        openai_server.script(Raw("<html><body>Welcome</body></html>"))
        with pytest.raises(LLMError, match="no completion stream"):
            openai_rag(seeded, openai_server).answer(QUESTION)

    def test_rate_limit_through_pipeline(self, seeded: RAG, openai_server: FakeOpenAIServer) -> None:
        openai_server.default = rate_limited()
        pipeline = openai_rag(seeded, openai_server, openai_max_retries=1)
        with pytest.raises(LLMError, match="429"):
            pipeline.answer(QUESTION)
        assert len(openai_server.completions) == 2

    def test_server_error_through_pipeline(self, seeded: RAG, openai_server: FakeOpenAIServer) -> None:
        openai_server.default = Status(500)
        with pytest.raises(LLMError, match="HTTP 500"):
            openai_rag(seeded, openai_server).answer(QUESTION)

    def test_cli_ask_json(
        self,
        seeded: RAG,
        openai_server: FakeOpenAIServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-cli")
        monkeypatch.setenv("RAG_OPENAI_MODEL", "cli-model")
        monkeypatch.setenv("RAG_OPENAI_MAX_RETRIES", "0")
        monkeypatch.setattr(rag.pipeline.store, "Embedder", lambda *a, **k: seeded.embedder)  # skip a second load
        openai_server.script(Reply("Stanislav Zas is the Secretary General of the CSTO [1]."))
        index_dir = str(seeded.settings.index_dir)
        assert run(["--index-dir", index_dir, "ask", QUESTION, "--backend", "openai", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert {"text", "citations", "passages", "refused"} <= data.keys()
        assert data["text"] == "Stanislav Zas is the Secretary General of the CSTO [1]."
        assert data["refused"] is False
        assert [c["number"] for c in data["citations"]] == [1]
        assert data["passages"] and data["backend"] == "openai" and data["model"] == "cli-model"
        [sent] = openai_server.completions
        assert sent.body is not None and sent.body["model"] == "cli-model"
        assert sent.headers["authorization"] == "Bearer sk-cli"

    def test_cli_reports_endpoint_failure_without_traceback(
        self,
        seeded: RAG,
        openai_server: FakeOpenAIServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
        monkeypatch.setenv("RAG_OPENAI_MAX_RETRIES", "0")
        monkeypatch.setattr(rag.pipeline.store, "Embedder", lambda *a, **k: seeded.embedder)
        openai_server.default = Status(500)
        with pytest.raises(SystemExit) as exit_info:
            main(["--index-dir", str(seeded.settings.index_dir), "ask", QUESTION, "--backend", "openai"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "error:" in err and "HTTP 500" in err and "Traceback" not in err
