"""Who an annotator is, and where a vote came from.

An `AnnotatorPolicy` turns what a browser session presents into one annotator name: the Hugging Face account
it signed in with (`oauth`: sign-in required), the name an invite token stands for (`invite`: tokens from a file
the operator hands out), or a typed name (`open`; a signed-in account still wins). Typed names are normalised
(NFKC, case-folded, trimmed, inner spaces collapsed), so "Alice", "ALICE" and " alice " are one annotator, and
refused when they hold control, zero-width, bidi or other invisible format characters, mix Latin, Greek and
Cyrillic letters, or are spelled wholly in Greek/Cyrillic look-alikes of Latin letters ("аlice", "аӏісе").

Votes carry salted fingerprints (HMAC-SHA256, 16 hex digits) of the client address and the Gradio session, so an
operator can audit and flag suspicious runs without the store holding addresses. The salt comes from the
environment (TOOLGEN_VOTE_SALT) or a file generated once beside the results store.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("open", "invite", "oauth")
MAX_NAME = 64
MIN_TOKEN = 16
SALT_ENV = "TOOLGEN_VOTE_SALT"
# Unicode categories no name needs: controls, invisible format characters (zero-width space/joiners, bidi
# embeddings and overrides, soft hyphen, BOM), private use, surrogates, unassigned, line/paragraph separators.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}
_CONFUSABLE_SCRIPTS = {"LATIN", "GREEK", "CYRILLIC"}
# Greek and Cyrillic lowercase letters that look like Latin ones (after case folding).
_LATIN_LOOKALIKES = set("аеорсухіјѕһԁԛԝӏαεικνορτυχ")


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def normalise_name(text: object) -> str:
    """The canonical form of a typed annotator name; ValueError saying what is wrong with a refused one."""
    if not isinstance(text, str):
        raise ValueError("the annotator name must be text")
    name = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    if not name:
        raise ValueError("enter your name (or sign in) before judging")
    if len(name) > MAX_NAME:
        raise ValueError(f"the annotator name is longer than {MAX_NAME} characters")
    refused = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in _REFUSED_CATEGORIES})
    if refused:
        raise ValueError(
            f"the annotator name holds invisible or control characters ({', '.join(refused[:3])}); "
            "type it with visible letters only"
        )
    letters = [c for c in name if c.isalpha()]
    scripts = {_script(c) for c in letters} & _CONFUSABLE_SCRIPTS
    if len(scripts) > 1:
        raise ValueError(
            f"the annotator name mixes {' and '.join(sorted(s.title() for s in scripts))} letters; "
            "write it in one script"
        )
    if scripts and scripts != {"LATIN"} and all(c in _LATIN_LOOKALIKES for c in letters):
        raise ValueError(
            "the annotator name is spelled with Greek or Cyrillic look-alikes of Latin letters; "
            "write it in Latin letters"
        )
    return name


def load_invites(path: str | Path) -> dict[str, str]:
    """Invite tokens from a file: one `TOKEN [NAME]` per line (`#` starts a comment). A token stands for the
    annotator NAME, or `invitee-<8 hex digits>` without one. Returns token -> annotator name."""
    path = Path(path)
    invites: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        token, _, name = line.partition(" ")
        where = f"{path}: line {number}"
        if len(token) < MIN_TOKEN:
            raise ValueError(f"{where}: the invite token is shorter than {MIN_TOKEN} characters")
        if token in invites:
            raise ValueError(f"{where}: the invite token appears twice")
        try:
            digest = hashlib.sha256(token.encode()).hexdigest()[:8]
            annotator = normalise_name(name) if name.strip() else f"invitee-{digest}"
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        if annotator in invites.values():
            raise ValueError(f"{where}: annotator {annotator!r} has two tokens")
        invites[token] = annotator
    if not invites:
        raise ValueError(f"{path}: no invite tokens")
    return invites


def load_salt(path: str | Path) -> bytes:
    """The fingerprint salt: $TOOLGEN_VOTE_SALT, else the file at `path`, created (owner-only) on first use."""
    if os.environ.get(SALT_ENV):
        return os.environ[SALT_ENV].encode()
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def salt_path(db_path: str | Path) -> Path:
    """Where the salt file of a results store lives: beside it, `<store>.salt`."""
    return Path(f"{db_path}.salt")


@dataclass(frozen=True)
class AnnotatorPolicy:
    """How sessions become annotators (`mode`, one of MODES) and how votes are fingerprinted."""

    mode: str = "open"
    invites: Mapping[str, str] = field(default_factory=dict)  # token -> annotator name (mode "invite")
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    trust_forwarded: bool = False  # behind one trusted proxy (a Space): the client is X-Forwarded-For's last entry

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown annotator mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.mode == "invite" and not self.invites:
            raise ValueError("annotator mode 'invite' needs invite tokens (--invite-tokens FILE)")

    @property
    def prompt(self) -> str:
        """What the name box asks for."""
        return {"open": "Your name", "invite": "Invite token", "oauth": "Sign in with Hugging Face"}[self.mode]

    def annotator(self, typed: object, profile=None) -> str:
        """The annotator a session acts as, from its sign-in `profile` (a `gr.OAuthProfile` or None) and what
        it typed into the name box; ValueError with the reason when it may not judge."""
        if self.mode == "invite":
            token = typed.strip() if isinstance(typed, str) else ""
            for known, name in self.invites.items():
                if hmac.compare_digest(known.encode(), token.encode()):
                    return name
            raise ValueError("enter a valid invite token to judge" if token else "enter your invite token to judge")
        if profile is not None:
            return normalise_name(profile.username)
        if self.mode == "oauth":
            raise ValueError("sign in with Hugging Face to judge")
        return normalise_name(typed)

    def fingerprint(self, value: str) -> str:
        """A salted, one-way fingerprint of `value` (16 hex digits)."""
        return hmac.new(self.salt, value.encode(), hashlib.sha256).hexdigest()[:16]

    def client_address(self, request) -> str:
        """The address a `gr.Request` came from."""
        if self.trust_forwarded:
            forwarded = request.headers.get("x-forwarded-for", "")
            if forwarded.strip():
                return forwarded.split(",")[-1].strip()
        return request.client.host if getattr(request, "client", None) else "unknown"

    def client_hash(self, request) -> str:
        return self.fingerprint("client:" + self.client_address(request))

    def session_hash(self, request) -> str:
        return self.fingerprint("session:" + str(getattr(request, "session_hash", None) or ""))
