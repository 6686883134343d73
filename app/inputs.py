"""Input components that enforce on the server what their UI shows, with a clear message for anything else.

A browser keeps a slider in range and a textbox under its `max_length`; a script calling the API does not. These
drop-in Gradio components check the value before the handler runs and refuse it with `gr.Error` naming the input:
`Text` (text, at most `max_length` characters), `IntSlider` (a whole number in range: no NaN, infinity, fraction
or text) and `ChatHistory` (a Chatbot whose malformed history says what is wrong with which message).
"""

from __future__ import annotations

import math

import gradio as gr
from gradio.components.chatbot import ChatbotDataMessages
from pydantic import ValidationError

HISTORY_SHAPE = (
    'a list of {"role": "user" | "assistant", "content": [{"type": "text", "text": "…"}], '
    '"metadata": {…} (optional)} messages'
)


class Text(gr.Textbox):
    """A textbox whose server side refuses non-text and text over `max_length` characters."""

    is_template = True  # rendered as a plain Textbox

    def preprocess(self, payload):
        if payload is None:
            payload = ""
        if not isinstance(payload, str):
            raise gr.Error(f"{self.label or 'text'}: expected text, got {type(payload).__name__}")
        if self.max_length is not None and len(payload) > self.max_length:
            raise gr.Error(f"{self.label or 'text'}: at most {self.max_length:,} characters (got {len(payload):,})")
        return super().preprocess(payload)


class IntSlider(gr.Slider):
    """A slider of whole numbers whose server side refuses text, NaN, infinities, fractions and values out of
    range; the handler receives an int."""

    is_template = True  # rendered as a plain Slider

    def preprocess(self, payload) -> int:
        low, high = int(self.minimum), int(self.maximum)
        expected = f"{self.label or 'value'}: expected a whole number from {low} to {high}"
        if isinstance(payload, bool) or not isinstance(payload, (int, float)):
            raise gr.Error(f"{expected}, got {type(payload).__name__} {str(payload)[:40]!r}")
        if not math.isfinite(payload) or payload != int(payload) or not low <= payload <= high:
            raise gr.Error(f"{expected}, got {payload}")
        return int(payload)


class _CheckedMessages(ChatbotDataMessages):
    @classmethod
    def model_validate(cls, obj, **kwargs):
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as error:
            first = error.errors()[0]
            where = (
                "message " + str(first["loc"][0] + 1)
                if first["loc"] and isinstance(first["loc"][0], int)
                else "the history"
            )
            field = ".".join(str(part) for part in first["loc"][1:])
            raise gr.Error(
                f"malformed chat history: {where}{f', {field}' if field else ''}: {first['msg']}. "
                f"Expected {HISTORY_SHAPE}; send [] to start afresh."
            ) from None


class ChatHistory(gr.Chatbot):
    """A Chatbot whose server side refuses a malformed history with a message naming the faulty message."""

    is_template = True  # rendered as a plain Chatbot
    data_model = _CheckedMessages

    def preprocess(self, payload):
        messages = super().preprocess(payload)
        for number, message in enumerate(messages, start=1):
            if message["role"] not in ("user", "assistant"):
                raise gr.Error(
                    f"malformed chat history: message {number}: role {str(message['role'])[:20]!r} "
                    f"is neither 'user' nor 'assistant'. Expected {HISTORY_SHAPE}."
                )
        return messages
