"""A simulated ToolBench environment in the spirit of StableToolBench: replay real responses, else synthesise one.

The RapidAPI services behind ToolBench cannot be called offline, so a call is answered:
1. from a `ResponseCache` of real responses when one matches the call: same tool id and same canonical arguments
   (sorted-key compact JSON). The cache is a JSON file holding a list of `{"tool_id", "arguments", "response"}`
   records. None ships with the project: the only real responses at hand, the tool messages of the reference
   answers, are cut to their first 100 characters. `ResponseCache.record` + `save` build one from real calls.
   A replayed response is real but not executed now: `Observation(simulated=False, executed=False)`.
2. otherwise from the API's `template_response`, the shape of a typical reply ("str", "int", "float", "bool",
   "NoneType", "empty list", "list of str with length 8", lists of objects carrying "_list_length"), filled with
   plausible values drawn from a generator seeded by sha256(tool id + canonical arguments): the same call always
   gets the same reply. A response key that names a parameter of the call echoes the argument's value. APIs
   without a usable template get a short generic reply. Synthesised replies are marked twice: a top-level
   `"_simulated": true` in the JSON content and `Observation(simulated=True, executed=False)`.
Calls missing a required parameter are refused with an error observation, like a real API's 400 reply.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

from ..tools import Tool
from .base import Observation, error_observation

SIMULATED_KEY = "_simulated"
_LIST_OF = re.compile(r"^list of (\w+) with length (\d+)$")
_WORDS = (
    "amber",
    "atlas",
    "bright",
    "cedar",
    "delta",
    "ember",
    "falcon",
    "harbor",
    "iris",
    "juniper",
    "lumen",
    "maple",
    "nova",
    "orbit",
    "pioneer",
    "quartz",
    "river",
    "summit",
    "tango",
    "vista",
)
_CITIES = ("Paris", "Tokyo", "Toronto", "Nairobi", "Lima", "Oslo", "Sydney", "Madrid", "Seoul", "Austin")
_COUNTRIES = ("France", "Japan", "Canada", "Kenya", "Peru", "Norway", "Australia", "Spain", "Korea", "USA")


def canonical_arguments(arguments: dict) -> str:
    """The cache key text of a call's arguments: compact JSON with sorted keys."""
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class ResponseCache:
    """Real API responses keyed by (tool id, canonical arguments)."""

    def __init__(self):
        self._responses: dict[tuple[str, str], str] = {}

    def __len__(self) -> int:
        return len(self._responses)

    def get(self, tool_id: str, arguments: dict) -> str | None:
        """The recorded response of this exact call, or None."""
        return self._responses.get((tool_id, canonical_arguments(arguments)))

    def record(self, tool_id: str, arguments: dict, response: str) -> None:
        """Remember `response` (text) as the answer to this call."""
        if not isinstance(response, str):
            raise TypeError(f"response of {tool_id} must be text, got {type(response).__name__}")
        self._responses[(tool_id, canonical_arguments(arguments))] = response

    def save(self, path: Path | str) -> None:
        records = [
            {"tool_id": tool_id, "arguments": json.loads(key), "response": response}
            for (tool_id, key), response in self._responses.items()
        ]
        Path(path).write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> ResponseCache:
        """Read a cache file; ValueError naming the file and record on anything malformed."""
        try:
            records = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of {{tool_id, arguments, response}} records")
        cache = cls()
        for index, record in enumerate(records):
            if not (
                isinstance(record, dict)
                and isinstance(record.get("tool_id"), str)
                and isinstance(record.get("arguments"), dict)
                and isinstance(record.get("response"), str)
            ):
                raise ValueError(
                    f"{path}: record {index}: needs a string tool_id, an object arguments and a string response"
                )
            cache.record(record["tool_id"], record["arguments"], record["response"])
        return cache


class ToolBenchSimulator:
    """The executor for ToolBench tools: cached real responses, else deterministic template-filled ones."""

    def __init__(self, cache: ResponseCache | None = None, max_list_items: int = 3):
        self.cache = cache or ResponseCache()
        self.max_list_items = max_list_items

    def reset(self) -> None:
        """Nothing to reset: simulated APIs hold no state."""

    def call(self, tool: Tool, arguments: dict) -> Observation:
        if not isinstance(arguments, dict):
            return _simulated_error(f"arguments must be a JSON object, got {type(arguments).__name__}")
        required = tool.parameters.get("required", []) if isinstance(tool.parameters, dict) else []
        missing = [name for name in required if name not in arguments]
        if missing:
            return _simulated_error(f"{tool.id}: missing required parameter(s) {', '.join(map(repr, missing))}")
        cached = self.cache.get(tool.id, arguments)
        if cached is not None:
            return Observation(content=cached, simulated=False, executed=False)
        return Observation(
            content=json.dumps(self.synthesise(tool, arguments), ensure_ascii=False), simulated=True, executed=False
        )

    def synthesise(self, tool: Tool, arguments: dict) -> dict:
        """The simulated reply to a call, as a JSON object carrying `"_simulated": true`."""
        digest = hashlib.sha256(f"{tool.id}\n{canonical_arguments(arguments)}".encode()).digest()
        filler = _Filler(random.Random(int.from_bytes(digest[:8], "big")), arguments, self.max_list_items)
        template = _template(tool.response)
        if template is None:
            body = {
                "message": f"{tool.api_name} ({tool.tool_name}) answered the request.",
                "result": filler.string(tool.api_name),
            }
        else:
            body = filler.fill(template, "")
            if not isinstance(body, dict):
                body = {"data": body}
        return {SIMULATED_KEY: True, **body}


def _simulated_error(message: str) -> Observation:
    error = error_observation(message, executed=False)
    return Observation(content=error.content, ok=False, error=error.error, simulated=True, executed=False)


def _template(response: object) -> dict | list | None:
    """The template as JSON data: ToolBench stores some as JSON text (some cut short, hence unusable)."""
    if isinstance(response, str):
        try:
            response = json.loads(response)
        except json.JSONDecodeError:
            return None
    return response if isinstance(response, (dict, list)) and response else None


class _Filler:
    """Turns a template into data with values from one seeded generator."""

    def __init__(self, rng: random.Random, arguments: dict, max_list_items: int):
        self.rng, self.max_list_items = rng, max_list_items
        self.arguments = {name.lower(): value for name, value in arguments.items()}

    def fill(self, template: object, key: str) -> object:
        if isinstance(template, dict):
            return {k: self.fill(v, k) for k, v in template.items() if k != "_list_length"}
        if isinstance(template, list):
            return self.fill_list(template, key)
        if isinstance(template, str):
            return self.fill_text(template, key)
        return template  # numbers, booleans and null are example values: keep them

    def fill_list(self, template: list, key: str) -> list:
        if len(template) == 1 and isinstance(template[0], dict) and "_list_length" in template[0]:
            count = template[0]["_list_length"] if isinstance(template[0]["_list_length"], int) else 1
            return [self.fill(template[0], key) for _ in range(min(count, self.max_list_items))]
        if len(template) == 1 and isinstance(template[0], str) and _LIST_OF.match(template[0]):
            return self.fill(template[0], key)
        return [self.fill(item, key) for item in template[: self.max_list_items]]

    def fill_text(self, text: str, key: str) -> object:
        listed = _LIST_OF.match(text)
        if listed:
            kind, count = listed.groups()
            return [self.fill_text(kind, key) for _ in range(min(int(count), self.max_list_items))]
        if text in ("str", "int", "float", "bool") and key.lower() in self.arguments:
            echoed = self.arguments[key.lower()]
            if type(echoed).__name__ == text:
                return echoed
        if text == "str":
            return self.string(key)
        if text == "int":
            return self.rng.randint(1990, 2024) if "year" in key.lower() else self.rng.randint(1, 1000)
        if text == "float":
            return self.number(key)
        if text == "bool":
            return self.rng.random() < 0.5
        if text == "NoneType":
            return None
        if text in ("empty list", "list"):
            return []
        if text == "dict":
            return {}
        return text  # a literal example value

    def number(self, key: str) -> float:
        lowered = key.lower()
        if "lat" in lowered:
            return round(self.rng.uniform(-90, 90), 4)
        if "lon" in lowered or "lng" in lowered:
            return round(self.rng.uniform(-180, 180), 4)
        return round(self.rng.uniform(0, 100), 2)

    def string(self, key: str) -> str:
        """A plausible string for a response field named `key`."""
        rng, lowered = self.rng, key.lower()
        word = rng.choice(_WORDS)
        if any(k in lowered for k in ("url", "link", "href", "image", "img", "avatar", "thumb", "website", "uri")):
            return f"https://example.com/{word}/{rng.randint(1000, 9999)}"
        if any(k in lowered for k in ("date", "time", "created", "updated")):
            return (
                f"{rng.randint(2015, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
            )
        if "email" in lowered:
            return f"{word}{rng.randint(1, 99)}@example.com"
        if "phone" in lowered:
            return f"+1-555-01{rng.randint(0, 99):02d}"
        if "city" in lowered:
            return rng.choice(_CITIES)
        if "country" in lowered:
            return rng.choice(_COUNTRIES)
        if lowered == "id" or key.endswith("Id") or lowered.endswith(("_id", "uuid", "key", "token", "hash")):
            return f"{rng.getrandbits(48):012x}"
        topic = next((v for v in self.arguments.values() if isinstance(v, str) and v.strip()), "")
        if any(k in lowered for k in ("name", "title", "label")):
            return f"{topic or word.capitalize()} {rng.choice(_WORDS).capitalize()}".strip()
        return f"{word} {topic} {rng.choice(_WORDS)}".replace("  ", " ")
