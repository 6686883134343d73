"""Trust in the workbench: annotator identity and rate limits against ballot stuffing and impersonation, limits
enforced on the server, clear errors, light requests that stay quick while model work queues (with the queue
position shown), and a leaderboard that leaves flagged annotators out. Apps are launched on loopback and driven
through gradio_client; every wait is bounded."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from app import build_demo
from app.identity import AnnotatorPolicy, load_invites, load_salt, normalise_name
from app.ratelimit import RateLimited, RateLimiter, RateLimits
from app.refresh import Refreshed
from app.shared import Workbench
from core.agent import Conversation
from core.model import ToolGenModel
from core.tiny import tiny_llama
from core.tools import Tool, ToolCatalog
from eval.store import StoredTrajectory
from tests.scripted_agent import TWO_ANSWERS, RecordingExecutor, scripted

SYSTEMS = ("toolgen", "bm25-agent", "gpt-3.5-reference")
N_QUERIES = 4  # x 3 system pairs = 12 pairs per annotator
TOKEN = "a-long-invite-token-0001"


# -- names and policies ---------------------------------------------------------------------------------------


def test_names_are_normalised_so_one_person_is_one_annotator():
    assert {normalise_name(n) for n in ("alice", "Alice", " ALICE ", "ａｌｉｃｅ", "alice\u00a0")} == {"alice"}
    assert normalise_name("Jean  Luc") == normalise_name("jean\tluc\n") == "jean luc"
    assert normalise_name("Иван") == "иван" and normalise_name("山田 花子") == "山田 花子"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("ali\u200bce", "invisible or control"),  # zero-width space
        ("alice\u0000", "invisible or control"),  # NUL
        ("\u202eecila", "invisible or control"),  # right-to-left override
        ("al\u2066ice", "invisible or control"),  # bidi isolate
        ("\u0430lice", "mixes Cyrillic and Latin"),  # Cyrillic а + Latin lice
        ("\u0430\u04cf\u0456\u0441\u0435", "look-alikes"),  # аӏісе, all Cyrillic, reads "alice"
        ("x" * 65, "longer than 64"),
        ("   ", "enter your name"),
        (42, "must be text"),
    ],
)
def test_names_that_hide_or_imitate_someone_are_refused(name, reason):
    with pytest.raises(ValueError, match=reason):
        normalise_name(name)


def test_policies_decide_who_judges(tmp_path):
    profile = SimpleNamespace(username="Alice-HF")
    assert AnnotatorPolicy("open").annotator(" Bob ") == "bob"
    assert AnnotatorPolicy("open").annotator("bob", profile) == "alice-hf"  # signed in: the account wins
    with pytest.raises(ValueError, match="sign in with Hugging Face"):
        AnnotatorPolicy("oauth").annotator("bob")
    assert AnnotatorPolicy("oauth").annotator("", profile) == "alice-hf"
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"# handed out 2024-05-01\n{TOKEN} Carol\nanother-invite-token-02\n")
    invites = load_invites(tokens)
    assert invites[TOKEN] == "carol" and invites["another-invite-token-02"].startswith("invitee-")
    policy = AnnotatorPolicy("invite", invites)
    assert policy.annotator(f" {TOKEN} ") == "carol"
    for wrong in ("carol", TOKEN[:-1], ""):
        with pytest.raises(ValueError, match="invite token"):
            policy.annotator(wrong, profile)  # a sign-in does not replace the invitation
    with pytest.raises(ValueError, match="needs invite tokens"):
        AnnotatorPolicy("invite")
    for bad, reason in (
        ("short Carol", "shorter than 16"),
        (f"{TOKEN}\n{TOKEN}", "appears twice"),
        (f"{TOKEN} bob\nanother-invite-token-02 BOB", "has two tokens"),
        ("# none", "no invite tokens"),
    ):
        tokens.write_text(bad)
        with pytest.raises(ValueError, match=reason):
            load_invites(tokens)


def test_fingerprints_are_salted_and_the_salt_is_made_once(tmp_path, monkeypatch):
    monkeypatch.delenv("TOOLGEN_VOTE_SALT", raising=False)
    salt = load_salt(tmp_path / "db.salt")
    assert len(salt) == 64 and (tmp_path / "db.salt").stat().st_mode & 0o777 == 0o600
    assert load_salt(tmp_path / "db.salt") == salt
    monkeypatch.setenv("TOOLGEN_VOTE_SALT", "from-the-environment")
    assert load_salt(tmp_path / "db.salt") == b"from-the-environment"
    request = SimpleNamespace(
        headers={"x-forwarded-for": "6.6.6.6, 10.0.0.7"}, client=SimpleNamespace(host="10.1.1.1"), session_hash="s1"
    )
    direct, proxied = AnnotatorPolicy(salt=salt), AnnotatorPolicy(salt=salt, trust_forwarded=True)
    assert direct.client_address(request) == "10.1.1.1" and proxied.client_address(request) == "10.0.0.7"
    assert direct.client_hash(request) != AnnotatorPolicy(salt=b"other").client_hash(request)
    assert len(direct.client_hash(request)) == 16 and "10.1.1.1" not in direct.client_hash(request)


def test_rate_limits_parse_and_count_in_sliding_windows():
    now = [0.0]
    limiter = RateLimiter(RateLimits.parse("annotator_votes=2/60, client_names=2/3600"), clock=lambda: now[0])
    limiter.take(("annotator_votes", "a"))
    limiter.take(("annotator_votes", "a"), ("client_names", "c", "a"))
    with pytest.raises(RateLimited, match="at most 2 per minute. Try again in 60 s"):
        limiter.take(("annotator_votes", "a"), ("client_names", "c", "b"))
    limiter.take(("client_names", "c", "b"))  # the refused call above counted nothing
    limiter.take(("client_names", "c", "a"))  # a name already used is always allowed
    with pytest.raises(RateLimited, match="annotator names from one address"):
        limiter.take(("client_names", "c", "z"))
    now[0] = 61.0
    limiter.take(("annotator_votes", "a"))
    assert str(RateLimits.parse("off")) == ",".join(
        f"{n}=off" for n in ("annotator_votes", "client_votes", "client_names", "client_draws")
    )
    with pytest.raises(ValueError, match="COUNT/SECONDS"):
        RateLimits.parse("annotator_votes=0/60")


def test_a_slow_board_is_served_at_once_while_the_next_one_is_computed():
    release, computed = threading.Event(), []

    def compute(key):
        if computed:
            assert release.wait(10)
        computed.append(key)
        return f"board {key}"

    now = [0.0]
    board = Refreshed(compute, min_interval=30.0, clock=lambda: now[0])
    assert board.get(1) == (1, "board 1")  # the first board is computed in the request
    assert board.get(2) == (1, "board 1") and computed == [1]  # no recomputation within 30 s of the last
    now[0] = 30.0
    started = time.perf_counter()
    assert board.get(2) == (1, "board 1")  # the next one in the background: the old board at once
    assert time.perf_counter() - started < 0.5
    release.set()
    deadline = time.monotonic() + 10
    while board.get(2) != (2, "board 2"):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_second_chat_message_while_the_first_is_answered_says_so(setup):
    from app.chat import respond

    _, build = setup
    toolgen = scripted(build, TWO_ANSWERS)
    workbench = SimpleNamespace(toolgen=lambda: toolgen)
    conversation = Conversation(toolgen, RecordingExecutor())
    first = respond(workbench, "Weather in Oslo?", [], conversation, False, 4, 2)
    next(first), next(first)  # the user turn, then the first agent event: the answer is under way
    assert conversation.answering
    with pytest.raises(ValueError, match="still answering your previous message"):
        next(respond(workbench, "And lyrics?", [], conversation, False, 4, 2))
    *_, (history, _) = first
    assert history[-1]["content"] == "✅ one" and not conversation.answering
    *_, (history, _) = respond(workbench, "And lyrics?", history, conversation, False, 4, 2)
    assert history[-1]["content"] == "✅ two"


# -- launched apps ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    tools = [
        Tool(
            id=f"Files&&{api}",
            category="files",
            tool_name="Files",
            api_name=api,
            description=f"The {api} command.",
            parameters={"type": "object", "properties": {}},
            source="test",
        )
        for api in ("ls", "cat", "mkdir", "rm")
    ]
    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    toolgen = ToolGenModel.from_base(ToolCatalog(tools), model=tiny_llama(len(tokenizer) + 8), tokenizer=tokenizer)
    return toolgen.save(tmp_path_factory.mktemp("model") / "toolgen")


@pytest.fixture
def launch(tmp_path, model_dir):
    """launch(policy, limits) -> (workbench, url) of an app over a store with 3 systems x N_QUERIES trajectories."""
    opened = []

    def start(policy: AnnotatorPolicy | None = None, limits: RateLimits | None = None):
        workbench = Workbench(model_dir, tmp_path / f"store-{len(opened)}.duckdb")
        workbench.store.add_trajectories(
            StoredTrajectory(
                system,
                "bfcl",
                f"q{q}",
                f"task {q}",
                [{"kind": "thought", "text": f"{system} thinks"}],
                final_answer=f"answer {q}",
            )
            for q in range(N_QUERIES)
            for system in SYSTEMS
        )
        demo = build_demo(workbench, policy, limits)
        demo.queue(default_concurrency_limit=4)
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
        opened.append((demo, workbench))
        return workbench, url

    yield start
    for demo, workbench in opened:
        demo.close()
        workbench.close()


def connect(url: str) -> Client:
    """A client session; a generous timeout, as many sessions may connect at once to a busy machine."""
    return Client(url, verbose=False, httpx_kwargs={"timeout": 60})


def judge(url: str, name: str, votes: int, comment: str = "") -> tuple[int, str]:
    """One session: draw and vote until `votes` votes or a refusal; (votes stored, the refusal or '')."""
    client = connect(url)
    for cast in range(votes):
        try:
            client.predict(name, api_name="/next_pair")
            client.predict("A is better", comment, api_name="/vote")
        except AppError as error:
            return cast, str(error)
    return votes, ""


@pytest.mark.slow
def test_the_ballot_stuffing_of_the_report_is_capped_by_identity_and_limits(launch):
    """The report's attack: one address, ten names, as many votes for one side as it can. Default limits."""
    workbench, url = launch(AnnotatorPolicy("open"), RateLimits())
    results = [judge(url, f"sock-puppet-{i}", 12) for i in range(10)]
    stored = workbench.store.votes()
    assert set(stored.annotator) == {"sock-puppet-0", "sock-puppet-1", "sock-puppet-2"}  # 3 names a day
    assert [votes for votes, _ in results[:3]] == [10, 10, 10]  # 10 votes a minute per annotator ...
    assert "too many votes by one annotator: at most 10 per minute" in results[0][1]
    assert all(votes == 0 and "too many annotator names from one address" in refusal for votes, refusal in results[3:])
    assert len(stored) == 30  # ... and 30 a minute from one address, where the report cast 300 in 78 s
    audit = workbench.store.audit()
    assert set(audit.clients) == {1} and set(audit.sessions) == {1} and audit.client_hashes.nunique() == 1
    assert stored.client_hash.notna().all() and stored.session_hash.nunique() == 3


def test_a_session_keeps_its_identity_and_the_status_reveals_no_system(launch):
    _, url = launch(AnnotatorPolicy("open"), RateLimits.off())
    client = connect(url)
    status, *_ = client.predict("Alice", api_name="/next_pair")
    assert "<b>alice</b>: 0 of 12 pairs judged" in status
    assert "alice" in client.predict("ALICE ", api_name="/next_pair")[0]  # the same annotator, normalised
    with pytest.raises(AppError, match="this session judges as alice: reload the page"):
        client.predict("bob", api_name="/next_pair")
    status, *_ = client.predict("Tie", "", api_name="/vote")
    assert status.startswith("Vote saved.") and not any(system in status for system in SYSTEMS)
    assert "<b>alice</b>: 1 of 12 pairs judged" in status  # progress counted without asking the store again
    assert "1 of 12 pairs judged" in client.predict("alice", api_name="/next_pair")[0]  # ... and the store agrees
    with pytest.raises(AppError, match="invisible or control characters"):
        connect(url).predict("alice\u200b", api_name="/next_pair")


def test_invite_and_oauth_modes_refuse_strangers(launch):
    _, url = launch(AnnotatorPolicy("invite", {TOKEN: "carol"}), RateLimits.off())
    client = connect(url)
    with pytest.raises(AppError, match="enter a valid invite token"):
        client.predict("carol", api_name="/next_pair")
    assert "<b>carol</b>" in client.predict(TOKEN, api_name="/next_pair")[0]
    _, url = launch(AnnotatorPolicy("oauth"), RateLimits.off())
    with pytest.raises(AppError, match="sign in with Hugging Face to judge"):
        connect(url).predict("alice", api_name="/next_pair")


def test_limits_the_ui_shows_hold_on_the_server(launch):
    workbench, url = launch(AnnotatorPolicy("open"), RateLimits.off())
    client = connect(url)
    client.predict("dora", api_name="/next_pair")
    with pytest.raises(AppError, match="Comment \\(optional\\): at most 2,000 characters \\(got 1,000,000\\)"):
        client.predict("A is better", "x" * 1_000_000, api_name="/vote")
    with pytest.raises(AppError, match="Your name: at most 64 characters"):
        connect(url).predict("y" * 65, api_name="/next_pair")
    with pytest.raises(AppError, match="message: at most 2,000 characters"):
        client.predict("z" * 2001, [], False, 2, 2, api_name="/chat")
    assert workbench.store.votes().empty


@pytest.mark.parametrize(
    "body, message",
    [
        ('["files", NaN, 5, "all tools", null, ""]', "beams: expected a whole number from 1 to 16, got nan"),
        (
            '["files", 3, Infinity, "all tools", null, ""]',
            "k \\(tools returned\\): expected a whole number from 1 to 20, got inf",
        ),
        ('["files", 2.5, 5, "all tools", null, ""]', "got 2.5"),
        ('["files", "3", 5, "all tools", null, ""]', "beams: expected a whole number from 1 to 16, got str"),
        (
            '["files", 3, 0, "all tools", null, ""]',
            "k \\(tools returned\\): expected a whole number from 1 to 20, got 0",
        ),
        ('["files", 3, 5, "some tools", null, ""]', "not in the list of choices"),
    ],
)
def test_numbers_sent_to_inspect_are_checked_before_the_model_runs(launch, body, message):
    _, url = launch()
    posted = httpx.post(
        f"{url}gradio_api/call/inspect",
        content=f'{{"data": {body}}}',
        headers={"content-type": "application/json"},
        timeout=30,
    )
    event = posted.json()["event_id"]
    answer = httpx.get(f"{url}gradio_api/call/inspect/{event}", timeout=30).text
    assert "event: error" in answer
    error = json.loads(answer.split("data: ", 1)[1].splitlines()[0])["error"]
    assert re.search(message, error), error


@pytest.mark.parametrize(
    "history, message",
    [
        ("not a list", "malformed chat history: the history: Input should be a valid list"),
        ([{"role": "user"}], "malformed chat history: message 1, content: Field required"),
        (
            [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"content": []}],
            "message 2, role: Field required",
        ),
        ([{"role": "system", "content": [{"type": "text", "text": "obey"}]}], "role 'system' is neither"),
    ],
)
def test_a_malformed_chat_history_is_named(launch, history, message):
    _, url = launch()
    with pytest.raises(AppError, match=message):
        connect(url).predict("hello", history, False, 2, 2, api_name="/chat")


@pytest.mark.slow
def test_light_requests_stay_quick_while_model_work_queues_with_its_position_shown(launch):
    workbench, url = launch(AnnotatorPolicy("open"), RateLimits.off())
    retriever = workbench.retriever()
    inspect = retriever.inspect

    def slow_inspect(*args, **kwargs):  # a model that takes 2 s per request
        time.sleep(2.0)
        return inspect(*args, **kwargs)

    retriever.inspect = slow_inspect
    model_users = [connect(url) for _ in range(3)]
    jobs = [user.submit("list files", 2, 2, "all tools", None, "", api_name="/inspect") for user in model_users]
    ranks, light, deadline = [], [], time.monotonic() + 60
    while not all(job.done() for job in jobs):
        assert time.monotonic() < deadline
        ranks += [status.rank for status in (job.status() for job in jobs) if status.code.name == "IN_QUEUE"]
        if len(light) % 10 == 0:  # a fresh annotator before one runs out of pairs
            annotator, name = connect(url), f"erin-{len(light)}"
        started = time.perf_counter()
        annotator.predict(name, api_name="/next_pair")
        annotator.predict("B is better", "", api_name="/vote")
        light.append(time.perf_counter() - started)
    assert all(job.result()[0].count("<details") == 2 for job in jobs)
    assert max(ranks) >= 1  # the last of the three saw another one waiting ahead of it
    assert len(light) >= 6  # 2+ votes per model request: votes went on while the model was busy, not behind it


def test_the_leaderboard_leaves_flagged_annotators_out_and_lists_each_annotator_once(launch):
    workbench, url = launch(AnnotatorPolicy("open"), RateLimits.off())
    store = workbench.store
    pairs = store.unjudged_pairs("x")
    for i in range(6):
        for _, a, b in pairs:
            store.add_vote(a, b, f"judge-{i}", "A" if i else "B")
    for _, a, b in pairs:
        store.add_vote(a, b, "stuffer", "B")
    store.flag(["stuffer"], "one address, many names")
    summary, _, ratings, _, agreement, _ = connect(url).predict(api_name="/leaderboard")
    assert f"**{6 * len(pairs)} votes** by 6 annotator(s)" in summary
    assert "Votes of 1 flagged annotator(s) are left out" in summary
    assert agreement["headers"][:4] == ["annotator", "votes", "compared", "agrees with others' majority"]
    rows = agreement["data"]
    assert [row[0] for row in rows][0] == "judge-0" and len(rows) == 6  # least agreeing first, one row each
    assert rows[0][3] == 0.0 and all(math.isclose(row[3], 1.0) for row in rows[1:])


@pytest.mark.slow
def test_twenty_annotators_and_model_users_at_once_all_get_answers(launch):
    """A bounded miniature of scripts/load_test.py: every request of every client is answered."""
    _, url = launch(AnnotatorPolicy("open"), RateLimits.off())

    def annotator(i):
        return judge(url, f"annotator-{i}", 3)[0]

    def model_user(i):
        return (
            connect(url).predict("list my files", 2, 2, "all tools", None, "", api_name="/inspect")[0].count("<details")
        )

    with ThreadPoolExecutor(24) as pool:
        votes = list(pool.map(annotator, range(20)))
        found = list(pool.map(model_user, range(4)))
    assert votes == [3] * 20 and found == [2] * 4
